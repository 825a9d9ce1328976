"""SE: the Squeeze-and-Excitation block.

Hu, Shen and Sun, "Squeeze-and-Excitation Networks", CVPR 2018 (section
3): squeeze by global average pooling, excite with
two fully connected layers around a ReLU (reduction ratio r = 16), a sigmoid,
and rescale the channels::

    out = x * sigmoid(W2 relu(W1 GAP(x) + b1) + b2)

The FC layers keep their biases (the paper omits them from its notation only;
with them ResNet-50 + SE has the paper's 28.09 M parameters).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers.arg_checks import (LatentChannels, check_int,
                                resolve_latent_channels)
from ..layers.dims import HW_DIMS
from ..layers.precision import half_in_float32
from ..layers.registration import register_model
from ..layers.squeeze import MeanPool


def hidden_width(in_channels: int, reduction: int,
                 latent_channels: Optional[LatentChannels]) -> int:
    """Hidden width of an SE-style MLP: C // r, or ``latent_channels``.

    ``latent_channels`` (a count >= 1 or a fraction in (0, 1) of C, as in the
    architecture-agnostic SE method card) replaces the reduction when given.
    The width is at least 1, so narrow layers (C < r) still get an MLP.
    """
    if latent_channels is not None:
        return resolve_latent_channels(latent_channels, in_channels)
    return max(1, in_channels // check_int('reduction', reduction))


@register_model
class SE(nn.Module):
    """Squeeze-and-Excitation channel attention.

    Args:
        in_channels (int): C of the input (B, C, H, W).
        reduction (int): r; the hidden layer has max(1, C // r) units.
        latent_channels (int | float, optional): the hidden width instead,
            as a count or a fraction of C.

    Parameters: 2 * C * h + h + C for hidden width h.
    """
    _abbr_ = 'se'

    def __init__(self, in_channels: int, reduction: int = 16,
                 latent_channels: Optional[LatentChannels] = None):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        hidden = hidden_width(in_channels, reduction, latent_channels)
        self.squeeze = MeanPool(HW_DIMS)
        self.reduce = nn.Conv2d(in_channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, in_channels, 1)

    @half_in_float32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        z = self.squeeze(x)  # (B, C, 1, 1)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(z))))
