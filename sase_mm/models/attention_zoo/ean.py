"""EAN: an Efficient Attention module guided by Normalization.

The SASE paper (arXiv 2411.08333) compares with "EAN (Li, Li, and Wen 2024)":
Li, Li and Wen, "EAN: An Efficient Attention Module Guided by Normalization
for Deep Neural Networks", AAAI 2024, 38, 3100-3108. That paper's text is not
among this project's references; what the SASE paper says of it:

  * "EAN extends GCT-Net by separating the input tensor into several groups
    and individually extracting l2-norm within each group";
  * GCT-Net and EAN "assign a set of learnable scaling and shifting factor
    for each channel" as the excitation;
  * "Following EAN, we implemented an instance normalization, which applies a
    standardization and an affine transform along the spatial dimension,
    before l2-normalization".

This module puts those three together::

    y = GroupNorm_G(x)                # per-group standardisation, affine
    s_c = sqrt(sum_hw y_c^2 + eps)    # GCT's l2 embedding, (B, C, 1, 1)
    n_c = s_c / sqrt(mean_{c' in group(c)} s_c'^2 + eps)  # per group
    out = x * sigmoid(a_c * n_c + b_c)  per-channel scale and shift (a=1, b=0)

Assumed (check against the EAN paper): the standardisation runs over each
group of C/G channels (GroupNorm, G = 8 by default), not over each channel
alone. An instance norm followed by an l2 norm over the same H, W would make
the embedding input-independent (sum_hw (w y + b)^2 = HW (w^2 v/(v+eps) +
b^2) for a standardised y of variance v/(v+eps)), so a per-channel
standardisation cannot be what makes EAN attend; within a group the relative
energy of each channel survives. The gate is a sigmoid (SASE's channel
``affine`` excitation, :class:`ChannelAffine`), not GCT's 1 + tanh.
Parameters: 2C (GroupNorm affine) + 2C (scale, shift).
"""
import torch
import torch.nn as nn

from ..layers.arg_checks import check_int
from ..layers.excitation import ChannelAffine
from ..layers.precision import half_in_float32
from ..layers.registration import register_model


@register_model
class EAN(nn.Module):
    """Efficient Attention guided by Normalization (reconstruction).

    Args:
        in_channels (int): C of the input (B, C, H, W); divisible by groups.
        groups (int): G, number of channel groups (8).
        eps (float): eps of the GroupNorm and of the roots (1e-5).
    """
    _abbr_ = 'ean'

    def __init__(self, in_channels: int, groups: int = 8, eps: float = 1e-5):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        self.groups = check_int('groups', groups)
        if in_channels % groups:
            raise ValueError(f'in_channels ({in_channels}) must be divisible '
                             f'by groups ({groups}); pass groups= a divisor '
                             f'of in_channels')
        self.eps = eps
        self.norm = nn.GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.excite = ChannelAffine(in_channels)  # sigmoid(a * n + b)

    @half_in_float32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        b, c = x.shape[:2]
        y = self.norm(x)
        s = (y.square().sum((2, 3)) + self.eps).sqrt()  # (B, C)
        s = s.view(b, self.groups, c // self.groups)
        n = s * torch.rsqrt(s.square().mean(-1, keepdim=True) + self.eps)
        return x * self.excite(n.view(b, c, 1, 1))

    def extra_repr(self):
        return f'in_channels={self.in_channels}, groups={self.groups}'
