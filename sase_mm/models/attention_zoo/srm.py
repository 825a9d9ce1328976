"""SRM: the Style-based Recalibration Module.

Lee, Kim and Nam, "SRM: A Style-based Recalibration Module for Convolutional
Neural Networks", ICCV 2019, section 3. Style pooling takes the mean and the
standard deviation of each channel over H, W; style integration combines the
two with a channel-wise fully connected layer (per channel: w_c1 * mean +
w_c2 * std, a grouped conv without bias), batch norm and a sigmoid; the gate
rescales the channels::

    u_c = [mean_c, std_c]                           (B, C, 2)
    g = sigmoid(BN(sum_k w_ck u_ck))                (B, C, 1, 1)
    out = x * g

The std is the unbiased one (divides by HW - 1), as in the authors' code
(``torch.std``); on a 1 x 1 map it is 0. Parameters: 2C (CFC) + 2C (BN).
"""
import torch
import torch.nn as nn

from ..layers.arg_checks import check_int
from ..layers.dims import HW_DIMS
from ..layers.feature_stats import FeatureStats
from ..layers.precision import half_in_float32
from ..layers.registration import register_model


@register_model
class SRM(nn.Module):
    """Style-based Recalibration Module.

    Args:
        in_channels (int): C of the input (B, C, H, W).
    """
    _abbr_ = 'srm'

    def __init__(self, in_channels: int):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        # Channel-wise fully connected: one (mean, std) -> 1 map per channel.
        self.cfc = nn.Conv1d(in_channels, in_channels, kernel_size=2,
                             groups=in_channels, bias=False)
        self.bn = nn.BatchNorm1d(in_channels)

    @half_in_float32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        b, c = x.shape[:2]
        s = FeatureStats(x)
        # (B, C, 1, 2): the style of each channel.
        u = torch.cat([s.mean(HW_DIMS), s.std_unbiased(HW_DIMS)], dim=-1)
        z = self.bn(self.cfc(u.view(b, c, 2)))  # (B, C, 1)
        return x * torch.sigmoid(z).view(b, c, 1, 1)
