"""CBAM: the Convolutional Block Attention Module.

Woo, Park, Lee and Kweon, "CBAM: Convolutional Block Attention Module", ECCV
2018, section 3. Channel attention, then spatial attention, applied in that
order::

    Mc = sigmoid(MLP(AvgPool_HW(x)) + MLP(MaxPool_HW(x)))    (B, C, 1, 1)
    x' = Mc * x
    Ms = sigmoid(conv7x7([AvgPool_C(x'); MaxPool_C(x')]))    (B, 1, H, W)
    out = Ms * x'

The MLP (C -> C/r -> C, r = 16, ReLU after the first layer) is shared by both
pooled vectors; its layers have biases, as in the authors' code. The spatial
conv maps the 2 pooled maps ([mean, max], the paper's order) to 1, padding
k // 2, no bias; ``spatial_bn=True`` adds the BN the authors' code puts
between the conv and the sigmoid.
"""
from typing import Optional

import torch
import torch.nn as nn

from ..layers.arg_checks import LatentChannels, check_int
from ..layers.dims import C_DIMS, HW_DIMS
from ..layers.feature_stats import FeatureStats
from ..layers.precision import half_in_float32
from ..layers.registration import register_model
from .se import hidden_width


@register_model
class CBAM(nn.Module):
    """Convolutional Block Attention Module (channel, then spatial).

    Args:
        in_channels (int): C of the input (B, C, H, W).
        reduction (int): r of the shared MLP (hidden max(1, C // r)).
        latent_channels (int | float, optional): the MLP's hidden width
            instead, as a count or a fraction of C.
        spatial_kernel (int): odd kernel size of the spatial conv (7).
        spatial_bn (bool): BN after the spatial conv (authors' code).
    """
    _abbr_ = 'cbam'

    def __init__(self, in_channels: int, reduction: int = 16,
                 latent_channels: Optional[LatentChannels] = None,
                 spatial_kernel: int = 7, spatial_bn: bool = False):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        if check_int('spatial_kernel', spatial_kernel) % 2 == 0:
            raise ValueError(f'spatial_kernel must be odd (padding keeps '
                             f'H, W), got {spatial_kernel}')
        hidden = hidden_width(in_channels, reduction, latent_channels)
        self.mlp = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, in_channels, 1))
        self.spatial = nn.Sequential(
            nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2,
                      bias=False),
            *([nn.BatchNorm2d(1)] if spatial_bn else []))

    def channel_map(self, x: torch.Tensor) -> torch.Tensor:
        """Mc: (B, C, H, W) -> (B, C, 1, 1)."""
        s = FeatureStats(x)
        return torch.sigmoid(self.mlp(s.mean(HW_DIMS)) +
                             self.mlp(s.amax(HW_DIMS)))

    def spatial_map(self, x: torch.Tensor) -> torch.Tensor:
        """Ms: (B, C, H, W) -> (B, 1, H, W)."""
        s = FeatureStats(x)
        pooled = torch.cat([s.mean(C_DIMS), s.amax(C_DIMS)], dim=1)
        return torch.sigmoid(self.spatial(pooled))

    @half_in_float32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        x = x * self.channel_map(x)
        return x * self.spatial_map(x)
