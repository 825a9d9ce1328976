"""SSA: the Squash and Spatial Attention module.

SSANet: Squash and Spatial Attention Networks (the SSANet paper,
section 3). The squash (global pooling, average by default) gives one value
per channel; these values weight a sum over the channels into a saliency map,
which is batch-normalised and squashed by a sigmoid; the map rescales every
channel::

    caM = GAP(x)                                       (B, C, 1, 1)
    saM = sigmoid(BN(sum_i caM_i * x_i))               (B, 1, H, W)
    out = saM * x

The only parameters are the BN's gamma and beta (section 4: "no extra
parameter ... extra parameter of SSA-module is just in batch normalization
layers").
"""
import torch
import torch.nn as nn

from ..layers.arg_checks import check_choice, check_int
from ..layers.dims import HW_DIMS
from ..layers.feature_stats import FeatureStats
from ..layers.precision import half_in_float32
from ..layers.registration import register_model
from ..layers.squeeze import MeanPool


@register_model
class SSA(nn.Module):
    """Squash and Spatial Attention.

    Args:
        in_channels (int): C of the input (B, C, H, W).
        pool (str): the squash, ``'avg'`` (the paper's choice) or ``'max'``
            (section 2.2 also names global max pooling).
    """
    _abbr_ = 'ssa'
    POOLS = ('avg', 'max')

    def __init__(self, in_channels: int, pool: str = 'avg'):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        self.pool = check_choice('pool', pool, self.POOLS)
        self.squash = MeanPool(HW_DIMS) if pool == 'avg' else None
        self.bn = nn.BatchNorm2d(1)

    @half_in_float32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        cam = (self.squash(x) if self.squash is not None else
               FeatureStats(x).amax(HW_DIMS))  # (B, C, 1, 1)
        sam = (cam * x).sum(dim=1, keepdim=True)  # (B, 1, H, W)
        return x * torch.sigmoid(self.bn(sam))

    def extra_repr(self):
        return f'in_channels={self.in_channels}, pool={self.pool!r}'
