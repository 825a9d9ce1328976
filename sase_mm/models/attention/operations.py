"""The candidate operations of SASE's four operation sets.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333), section "search space"; numerics as in SASE-SPEC.md
section 2 (the reference implementation where the paper's equations are
lost). The ordered sets that use these classes live in ``op_sets.py``.

Every operation has the signature ``forward(x, stats=None)``. Squeeze
operations read shared statistics of ``x`` from ``stats`` (a
:class:`FeatureStats` of ``x``) when given, so that the seven candidates of a
search edge compute each mean or variance once; excitation operations ignore
it. All of them work at any H x W: statistics divide by the runtime size, and
per-position parameters are kept at a build-time size and resized
(bilinear) to the input when the two differ.

Shapes: a channel squeeze maps (B, C, H, W) -> (B, C, 1, 1), a spatial squeeze
(B, C, H, W) -> (B, 1, H, W), a channel excitation (B, C, 1, 1) -> itself and
a spatial excitation (B, 1, H, W) -> itself.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .stats import FeatureStats, safe_sqrt

HW: Tuple[int, int] = (2, 3)  # channel statistics reduce over H, W
C: Tuple[int] = (1, )  # spatial statistics reduce over C
SizeLike = Union[int, Sequence[int]]
DEFAULT_SPATIAL_SIZE = (7, 7)


def to_size(size: Optional[SizeLike]) -> Tuple[int, int]:
    """Normalises an int or (H, W) to a tuple; ``None`` gives the default."""
    if size is None:
        return DEFAULT_SPATIAL_SIZE
    if isinstance(size, int):
        return (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f'spatial_size must be an int or (H, W) of positive '
                         f'ints, got {size!r}')
    return size


def resize_to(param: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinearly resizes a (..., h, w) per-position parameter to ``size``."""
    if tuple(param.shape[-2:]) == tuple(size):
        return param
    lead = param.shape[:-2]
    out = F.interpolate(param.reshape(1, -1, *param.shape[-2:]), size=size,
                        mode='bilinear', align_corners=False)
    return out.reshape(*lead, *size)


def _stats(x, stats):
    return stats if stats is not None else FeatureStats(x)


# --------------------------------------------------------------------------
# Squeeze operations. ``dims`` is HW for a channel squeeze, C for a spatial.
# --------------------------------------------------------------------------
class MeanPool(nn.Module):
    """GAP: the mean over ``dims``."""

    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x, stats=None):
        return _stats(x, stats).mean(self.dims)

    def extra_repr(self):
        return f'dims={self.dims}'


class LpPool(nn.Module):
    """L_p pooling: (sum over ``dims`` of x^p)^(1/p); a sum, not a mean."""

    def __init__(self, dims, p: int = 4):
        super().__init__()
        self.dims, self.p = tuple(dims), p

    def forward(self, x, stats=None):
        return safe_sqrt(x.pow(self.p).sum(dim=self.dims, keepdim=True),
                         p=float(self.p))

    def extra_repr(self):
        return f'dims={self.dims}, p={self.p}'


class PairPool(nn.Module):
    """GAP plus a second statistic, merged by Conv(2 -> 1, kernel 1) + ReLU.

    The same two merge weights serve every channel (position), so the op is
    relu(w0 * mean + w1 * stat); ``merge`` is kept as the 1x1 conv of the
    reference so its weight has the reference's (1, 2, 1, 1) shape.

    Args:
        dims: reduced dimensions.
        stat: ``'max'``, ``'std'`` (unbiased) or ``'skew'`` (third central
            moment, not normalised by std^3).
    """
    STATS = ('max', 'std', 'skew')

    def __init__(self, dims, stat: str):
        super().__init__()
        if stat not in self.STATS:
            raise ValueError(f'unknown statistic {stat!r}; valid: {self.STATS}')
        self.dims, self.stat = tuple(dims), stat
        self.merge = nn.Conv2d(2, 1, 1, bias=False)

    def forward(self, x, stats=None):
        s = _stats(x, stats)
        second = {'max': s.amax, 'std': s.std_unbiased,
                  'skew': s.third_moment}[self.stat](self.dims)
        w = self.merge.weight.view(2)
        return F.relu(w[0] * s.mean(self.dims) + w[1] * second)

    def extra_repr(self):
        return f'dims={self.dims}, stat={self.stat!r}'


class ChannelL2Norm(nn.Module):
    """InstanceNorm2d(C, affine) on x, then sqrt(sum over H, W of x^2)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x, stats=None):
        y = _stats(x, stats).normalized(HW, self.eps)
        y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return safe_sqrt(y.square().sum(dim=HW, keepdim=True))


class SpatialL2Norm(nn.Module):
    """LayerNorm over (H, W) with per-position affine, then sqrt(sum_C x^2).

    The affine parameters are (H0, W0) at the build-time size and resized to
    the input's H, W when they differ.
    """

    def __init__(self, spatial_size: SizeLike = None, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        size = to_size(spatial_size)
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size))

    def forward(self, x, stats=None):
        y = _stats(x, stats).normalized(HW, self.eps)
        size = x.shape[-2:]
        y = y * resize_to(self.weight, size) + resize_to(self.bias, size)
        return safe_sqrt(y.square().sum(dim=C, keepdim=True))


class CovRowConv(nn.Module):
    """BN on a (B, n, n) covariance + row-wise grouped conv + ReLU -> (B, n, 1, 1)."""

    def __init__(self, n: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(n)
        self.row_conv = nn.Conv2d(n, n, (n, 1), groups=n, bias=False)

    def forward(self, cov):
        b, n, _ = cov.shape
        return F.relu(self.row_conv(self.bn(cov.view(b, n, n, 1))))


class ChannelCovPool(nn.Module):
    """Second-order (covariance) channel pooling.

    Channels reduced to r = C/4 by adaptive average pooling along the channel
    axis; each reduced channel centred over its H*W positions; covariance
    Z Z^T / (r - 1) of shape (B, r, r); BN, row-wise conv, ReLU, then
    Conv2d(r -> C, 1x1).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.reduced = max(1, channels // 4)
        self.cov = CovRowConv(self.reduced)
        self.expand = nn.Conv2d(self.reduced, channels, 1, bias=False)

    def forward(self, x, stats=None):
        b, c, h, w = x.shape
        r = self.reduced
        if c % r == 0:
            z = x.reshape(b, r, c // r, h * w).mean(2)
        else:
            z = F.adaptive_avg_pool1d(x.reshape(b, c, h * w).transpose(1, 2),
                                      r).transpose(1, 2)
        z = z - z.mean(-1, keepdim=True)
        cov = torch.bmm(z, z.transpose(1, 2)) / max(r - 1, 1)
        return self.expand(self.cov(cov))


class SpatialCovPool(nn.Module):
    """Second-order spatial pooling over an 8 x 8 grid.

    Adaptive average pool to 8x8; (B, 64, C) centred over C; covariance over
    the 64 positions / 63; BN, row-wise conv, ReLU, Conv2d(64 -> 64, 1x1);
    viewed as (B, 1, 8, 8) and adaptively pooled back to (H, W).
    """
    GRID = 8

    def __init__(self):
        super().__init__()
        n = self.GRID * self.GRID
        self.cov = CovRowConv(n)
        self.proj = nn.Conv2d(n, n, 1, bias=False)

    def forward(self, x, stats=None):
        b, c, h, w = x.shape
        g = self.GRID
        z = F.adaptive_avg_pool2d(x, g).reshape(b, c, g * g).transpose(1, 2)
        z = z - z.mean(-1, keepdim=True)
        cov = torch.bmm(z, z.transpose(1, 2)) / (g * g - 1)
        y = self.proj(self.cov(cov)).view(b, 1, g, g)
        return F.adaptive_avg_pool2d(y, (h, w))


# --------------------------------------------------------------------------
# Excitation operations.
# --------------------------------------------------------------------------
class Conv1dChain(nn.Module):
    """ECA-style 1-D convs over the channel sequence, ReLU between, sigmoid.

    (B, C, 1, 1) -> (B, C, 1, 1): the C values are one length-C sequence;
    each conv is Conv1d(1 -> 1, kernel k, padding k // 2, no bias).
    """

    def __init__(self, kernel_size: int, depth: int = 1):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)
            for _ in range(depth))

    def forward(self, x, stats=None):
        y = x.view(x.shape[0], 1, -1)
        for i, conv in enumerate(self.convs):
            if i:
                y = F.relu(y)
            y = conv(y)
        return torch.sigmoid(y).view_as(x)


class FCExcitation(nn.Module):
    """SE's bottleneck: Conv2d(C -> C/r, 1x1), ReLU, Conv2d(-> C, 1x1).

    No sigmoid by default, as in the reference code (SASE-SPEC section 7);
    ``sigmoid=True`` gives the paper's bounded form.
    """

    def __init__(self, channels: int, reduction: int = 16,
                 sigmoid: bool = False):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=False)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=False)
        self.sigmoid = sigmoid

    def forward(self, x, stats=None):
        y = self.expand(F.relu(self.reduce(x)))
        return torch.sigmoid(y) if self.sigmoid else y

    def extra_repr(self):
        return f'sigmoid={self.sigmoid}'


class ChannelAffine(nn.Module):
    """sigmoid(a * x + b) with a, b per channel; a = 1, b = 0 at start."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x, stats=None):
        return torch.sigmoid(torch.addcmul(self.bias, self.weight, x))


class SpatialAffine(nn.Module):
    """sigmoid(a * x + b) with a, b per position, resized to the input."""

    def __init__(self, spatial_size: SizeLike = None):
        super().__init__()
        size = to_size(spatial_size)
        self.weight = nn.Parameter(torch.ones(1, *size))
        self.bias = nn.Parameter(torch.zeros(1, *size))

    def forward(self, x, stats=None):
        size = x.shape[-2:]
        return torch.sigmoid(
            torch.addcmul(resize_to(self.bias, size),
                          resize_to(self.weight, size), x))


class SpatialConv(nn.Module):
    """1 -> 1 channel convs (no bias), ReLU between, then sigmoid.

    Args:
        kernel_sizes: one (kh, kw) per conv; padding keeps H and W.
        relu_between: ReLU between consecutive convs (``2 x conv 3x3``);
            the separable pair (1xk then kx1) has none.
    """

    def __init__(self, kernel_sizes: Sequence[Tuple[int, int]],
                 relu_between: bool = True):
        super().__init__()
        self.relu_between = relu_between
        self.convs = nn.ModuleList(
            nn.Conv2d(1, 1, k, padding=(k[0] // 2, k[1] // 2), bias=False)
            for k in kernel_sizes)

    def forward(self, x, stats=None):
        y = x
        for i, conv in enumerate(self.convs):
            if i and self.relu_between:
                y = F.relu(y)
            y = conv(y)
        return torch.sigmoid(y)
