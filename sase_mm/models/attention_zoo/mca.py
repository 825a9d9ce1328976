"""MCA: Moment Channel Attention.

The SASE paper (arXiv 2411.08333) compares with "MCA (Jiang et al. 2024)":
Jiang, Jiang, Han, Huang and Zheng, "MCA: Moment Channel Attention
Networks", AAAI 2024, 38, 2579-2588. That paper's text is not among this
project's references; what the SASE paper says of it is: "MCA makes use of
the third-order moment (skew) to ensure a richer probability representation"
and "adopts skew pooling to accompany GAP". MCA's two parts are an
aggregation of moments of each channel (the "Extensive Moment Aggregation")
and a convolution across channels that mixes the moments (the "Cross Moment
Convolution")::

    m_c = [mean_hw(x_c), skew_hw(x_c)]                 (B, 2, C)
    a = sigmoid(conv1d_{2 -> 1, k}(m))                 (B, 1, C)
    out = x * a

Assumed where the available text is silent (stated so a reader can check
against the MCA paper):
  * the moments are the mean and the standardised skewness
    E[(x - mu)^3] / (Var + eps)^(3/2) (``moments`` selects others);
  * the cross-moment convolution is one Conv1d(#moments -> 1) over the
    channel sequence, no bias, kernel k from ECA-Net's adaptive rule
    (gamma = 2, b = 1), followed by a sigmoid that rescales the channels.
Parameters: #moments * k per module (tiny, like ECA).
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn

from ..layers.arg_checks import check_choice, check_int
from ..layers.dims import HW_DIMS
from ..layers.feature_stats import FeatureStats
from ..layers.precision import half_in_float32
from ..layers.registration import register_model
from .eca import eca_kernel_size


@register_model
class MCA(nn.Module):
    """Moment Channel Attention.

    Args:
        in_channels (int): C of the input (B, C, H, W).
        moments (sequence of str): per-channel moments over H, W, from
            ``'mean'``, ``'var'`` (biased), ``'std'`` (biased) and ``'skew'``
            (standardised); default ``('mean', 'skew')``.
        kernel_size (int, optional): odd k of the cross-moment conv;
            default: ECA's adaptive rule from C.
        eps (float): added to the variance in the skewness (1e-5).
    """
    _abbr_ = 'mca'
    MOMENTS = ('mean', 'var', 'std', 'skew')

    def __init__(self, in_channels: int,
                 moments: Sequence[str] = ('mean', 'skew'),
                 kernel_size: Optional[int] = None, eps: float = 1e-5):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        if isinstance(moments, str) or not len(moments):
            raise ValueError(f'moments must be a non-empty sequence of '
                             f'{self.MOMENTS}, got {moments!r}')
        self.moments = tuple(check_choice('moment', m, self.MOMENTS)
                             for m in moments)
        if kernel_size is None:
            kernel_size = eca_kernel_size(in_channels)
        elif check_int('kernel_size', kernel_size) % 2 == 0:
            raise ValueError(f'kernel_size must be odd, got {kernel_size}')
        self.eps = eps
        self.cmc = nn.Conv1d(len(self.moments), 1, kernel_size,
                             padding=kernel_size // 2, bias=False)

    def moment(self, s: FeatureStats, name: str) -> torch.Tensor:
        """One per-channel moment over H, W: (B, C, 1, 1)."""
        if name == 'mean':
            return s.mean(HW_DIMS)
        if name == 'var':
            return s.var(HW_DIMS)
        if name == 'std':
            return (s.var(HW_DIMS) + self.eps).sqrt()
        return s.third_moment(HW_DIMS) * (s.var(HW_DIMS) + self.eps).pow(-1.5)

    @half_in_float32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        b, c = x.shape[:2]
        s = FeatureStats(x)
        m = torch.cat([self.moment(s, n).view(b, 1, c) for n in self.moments],
                      dim=1)  # (B, #moments, C)
        return x * torch.sigmoid(self.cmc(m)).view(b, c, 1, 1)

    def extra_repr(self):
        return (f'in_channels={self.in_channels}, moments={self.moments}, '
                f'k={self.cmc.kernel_size[0]}')
