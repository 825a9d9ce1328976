"""GSoP: the global second-order pooling block (channel attention).

Gao, Xie, Wang and Li, "Global Second-order Pooling Convolutional Networks",
CVPR 2019 (GSoP-Net1's block, section 3). The input is reduced to c' = 128
channels by a 1x1 conv (with BN and ReLU); covariance pooling gives a
c' x c' matrix; a row-wise convolution (a grouped conv, one group per row,
4 outputs per row) turns it into a 4c' vector, followed by ReLU; a 1x1 conv
expands it to C; a sigmoid gives the channel weights::

    z = relu(BN(conv1x1(x)))                       (B, c', H, W)
    S = (z - mean_hw z)(z - mean_hw z)^T / (HW)    (B, c', c')
    v = relu(rowconv(BN(S)))                       (B, 4c', 1, 1)
    out = x * sigmoid(conv1x1(v))

The covariance divides by HW (the iSQRT-COV / MPN-COV pooling the authors
use). BN + row-wise conv + ReLU is SASE's :class:`CovRowConv` with 4 outputs
per row and a bias. Parameters per block: C c' + c' (reduce) + 2c' (BN) +
2c' (BN on S) + 4c'^2 + 4c' (row conv) + 4c' C + C (expand).
"""
import torch
import torch.nn as nn

from ..layers.arg_checks import check_int
from ..layers.precision import half_in_float32
from ..layers.registration import register_model
from ..layers.squeeze import CovRowConv


class GSoPRowConv(CovRowConv):
    """SASE's :class:`CovRowConv` with ``outputs_per_row`` outputs and a bias.

    (B, n, n) -> (B, outputs_per_row * n, 1, 1).
    """

    def __init__(self, n: int, outputs_per_row: int = 4):
        super().__init__(n)
        self.row_conv = nn.Conv2d(n, outputs_per_row * n, (n, 1), groups=n,
                                  bias=True)


@register_model
class GSoP(nn.Module):
    """GSoP-Net's second-order channel attention block.

    Args:
        in_channels (int): C of the input (B, C, H, W).
        reduced_channels (int): c', the width of the covariance (128).
        outputs_per_row (int): row-wise conv outputs per row (4).
    """
    _abbr_ = 'gsop'

    def __init__(self, in_channels: int, reduced_channels: int = 128,
                 outputs_per_row: int = 4):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        d = check_int('reduced_channels', reduced_channels)
        m = check_int('outputs_per_row', outputs_per_row)
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, d, 1), nn.BatchNorm2d(d),
            nn.ReLU(inplace=True))
        self.row = GSoPRowConv(d, m)
        self.expand = nn.Conv2d(m * d, in_channels, 1)

    @staticmethod
    def covariance(z: torch.Tensor) -> torch.Tensor:
        """(B, d, H, W) -> (B, d, d), centred over H*W, divided by H*W."""
        z = z.flatten(2)
        z = z - z.mean(-1, keepdim=True)
        return torch.bmm(z, z.transpose(1, 2)) / z.shape[-1]

    @half_in_float32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        cov = self.covariance(self.reduce(x))
        return x * torch.sigmoid(self.expand(self.row(cov)))
