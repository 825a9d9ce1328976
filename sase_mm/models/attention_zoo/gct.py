"""GCT: the Gaussian Context Transformer.

Ruan, Wang, Zheng, Zheng and Zheng, "Gaussian Context Transformer", CVPR
2021: the "GCT (CVPR, 2021)" of the SASE paper's comparison tables (which
cite Ruan et al. 2021 and list it at the plain ResNet's parameter count).
Global context by GAP, normalised across channels, then excited by a
Gaussian of fixed width instead of learned FC layers (GCT-B0, no
parameters)::

    z = mean_hw(x)                                   (B, C, 1, 1)
    z_hat = (z - mean_c(z)) / sqrt(var_c(z) + eps)   (biased var over C)
    g = exp(-z_hat^2 / (2 c^2))
    out = x * g

Channels whose context is close to the mean are kept, outliers suppressed.
The Gated Channel Transformation of Yang et al. (2020), also abbreviated
GCT, is ``sase_mm.GatedCT``.
"""
import torch
import torch.nn as nn

from ..layers.arg_checks import check_int
from ..layers.dims import HW_DIMS
from ..layers.precision import half_in_float32
from ..layers.registration import register_model
from ..layers.squeeze import MeanPool


@register_model
class GCT(nn.Module):
    """Gaussian Context Transformer (GCT-B0, parameter-free).

    Args:
        in_channels (int): C of the input (B, C, H, W).
        c (float): width of the Gaussian (the paper's constant c; 2).
        eps (float): added to the channel variance (1e-5).
    """
    _abbr_ = 'gct'

    def __init__(self, in_channels: int, c: float = 2.0, eps: float = 1e-5):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        if not c > 0 or not eps > 0:
            raise ValueError(f'c and eps must be > 0, got c={c!r}, '
                             f'eps={eps!r}')
        self.c, self.eps = float(c), float(eps)
        self.gap = MeanPool(HW_DIMS)

    @half_in_float32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        z = self.gap(x)
        mean = z.mean(dim=1, keepdim=True)
        var = (z - mean).square().mean(dim=1, keepdim=True)
        z_hat = (z - mean) * torch.rsqrt(var + self.eps)
        return x * torch.exp(-z_hat.square() / (2 * self.c**2))

    def extra_repr(self):
        return f'in_channels={self.in_channels}, c={self.c}, eps={self.eps}'
