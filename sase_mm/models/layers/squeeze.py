"""Squeeze operations: a feature map reduced to a channel or a spatial map.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333), the channel and spatial squeeze sets (docs/spec.md
section 2); several are also the squeezes of the attention zoo (SE's GAP,
GSoP's covariance). A channel squeeze maps (B, C, H, W) -> (B, C, 1, 1), a
spatial squeeze (B, C, H, W) -> (B, 1, H, W), selected by ``dims``
(:data:`~.dims.HW_DIMS` or :data:`~.dims.C_DIMS`).

Every operation has the signature ``forward(x, stats=None)``: it reads
shared statistics of ``x`` from ``stats`` (a :class:`FeatureStats` of ``x``)
when given, so that several operations on one input compute each mean or
variance once. Given ``stats`` it reads the map itself from ``stats.x`` and
accepts ``x=None`` (SASE's gated map ``s3 = gate * x`` is described by its
statistics and built only when an operation needs it). All of them work at
any H x W: statistics divide by the runtime size, and per-position
parameters are kept at a build-time size and resized (bilinear) to the
input when the two differ.

Every operation also declares what it reads from ``stats``: ``reads()``
returns a set of :class:`~.reads.Read` (a statistic over some dims, or the
map itself, :data:`~.reads.MAP`). The fused SASE block derives from these
declarations which operations it can run on statistics alone
(``sase/fast/fused/tape.py``); a squeeze without one makes that import
fail.

While the layers are exportable (``config.py``), the spatial L2 norm runs
its Function's plain reference, and :func:`adaptive_avg_pool` keeps its
pooling matrices, built in the graph, for every size (its shortcuts test
shapes, which a tracing exporter would freeze at the export size).
"""
import functools
from typing import FrozenSet, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .compiled import stats_kernels_for
from .config import is_exportable
from .dims import HW_DIMS, SizeLike, resize_to, to_size
from .feature_stats import FeatureStats
from .numerics import safe_sqrt
from .reads import MAP, Read, reading
from .reference import apply, reference_backward
from .stat_formulas import Amax, CentralSums, Pow4Sum, Sum, bmm_sum_c

Reads = FrozenSet[Read]


def _stats(x, stats) -> FeatureStats:
    return stats if stats is not None else FeatureStats(x)


class MeanPool(nn.Module):
    """GAP: the mean over ``dims``."""

    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(dims)

    def reads(self) -> Reads:
        return reading(self.dims, Sum)

    def forward(self, x, stats=None):
        return _stats(x, stats).mean(self.dims)

    def extra_repr(self):
        return f'dims={self.dims}'


class LpPool(nn.Module):
    """L_p pooling: (sum over ``dims`` of x^p)^(1/p); a sum, not a mean."""

    def __init__(self, dims, p: int = 4):
        super().__init__()
        self.dims, self.p = tuple(dims), p

    def reads(self) -> Reads:
        if self.p == 4:
            return reading(self.dims, Pow4Sum)
        return frozenset({MAP})  # no statistic of its own for other p

    def forward(self, x, stats=None):
        s = _stats(x, stats)
        if self.p == 4:
            total = s.pow4_sum(self.dims)
        else:
            total = s.x.pow(self.p).sum(dim=self.dims, keepdim=True)
        return safe_sqrt(total, p=float(self.p))

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
            raise ValueError(f'unknown statistic {stat!r}; valid: '
                             f'{self.STATS}')
        self.dims, self.stat = tuple(dims), stat
        self.merge = nn.Conv2d(2, 1, 1, bias=False)

    def reads(self) -> Reads:
        second = Amax if self.stat == 'max' else CentralSums
        return reading(self.dims, Sum, second)

    def forward(self, x, stats=None):
        s = _stats(x, stats)
        if self.stat == 'max':
            mean, second = s.mean_amax(self.dims)
        else:
            second = {'std': s.std_unbiased,
                      'skew': s.third_moment}[self.stat](self.dims)
            mean = s.mean(self.dims)
        w = self.merge.weight.view(2)
        return F.relu(w[0] * mean + w[1] * second)

    def extra_repr(self):
        return f'dims={self.dims}, stat={self.stat!r}'


class ChannelL2Norm(nn.Module):
    """InstanceNorm2d(C, affine) on x, then sqrt(sum over H, W of x^2).

    Computed in closed form from the variance: with xhat the normalised map
    (sum xhat = 0, sum xhat^2 = n var / (var + eps) over the n = H * W
    positions), sum (w xhat + b)^2 = n (w^2 var / (var + eps) + b^2), so the
    full-size normalised map is never built.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def reads(self) -> Reads:
        return reading(HW_DIMS, Sum, CentralSums)  # the variance

    def forward(self, x, stats=None):
        s = _stats(x, stats)
        var = s.var(HW_DIMS)
        w = self.weight.view(1, -1, 1, 1)
        b = self.bias.view(1, -1, 1, 1)
        sq = w.square() * (var / (var + self.eps)) + b.square()
        return safe_sqrt(sq * s.count(HW_DIMS))


class _LayerNormSquareSum(torch.autograd.Function):
    """sum over C of (w * LN_HW(x) + b)^2: (B, C, H, W) -> (B, 1, H, W).

    LN_HW normalises each (b, c) map over its H, W positions (LayerNorm over
    (H, W) without affine); w, b are (H, W). Written as one node with the
    closed-form LayerNorm gradient. On CPU (float32 / float64, eager) the
    compiled ``ln_square_sum`` kernels run it (``compiled.py``,
    ``csrc/sase_stats.cpp``): one pass over x forward, saving x and two
    numbers per map, and two backward (the second from cache). Elsewhere
    the PyTorch form below keeps one saved map (the normalised x) and a
    handful of full-size passes, against about twenty autograd temporaries
    for the same formula.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        kernels = stats_kernels_for(x)
        if not weight.dtype == bias.dtype == x.dtype:
            kernels = None  # mixed dtypes: torch promotes them below
        ctx.eps, ctx.kernels = eps, kernels
        if kernels is not None:
            b, c, h, w = x.shape
            out, mean, rstd = kernels.ln_square_sum(
                x.contiguous(), weight.contiguous(), bias.contiguous(), eps)
            ctx.save_for_backward(x, mean, rstd, weight, bias)
            return out.view(b, 1, h, w)
        xhat = x - x.mean(dim=HW_DIMS, keepdim=True)
        t = xhat * xhat
        rstd = torch.rsqrt(t.mean(dim=HW_DIMS, keepdim=True) + eps)
        xhat.mul_(rstd)
        y = torch.mul(xhat, weight, out=t).add_(bias)
        ctx.save_for_backward(xhat, rstd, weight, bias, x)
        return bmm_sum_c(y.mul_(y))

    @staticmethod
    def reference(x, weight, bias, eps):
        d = x - x.mean(dim=HW_DIMS, keepdim=True)
        var = d.square().mean(dim=HW_DIMS, keepdim=True)
        xhat = d * torch.rsqrt(var + eps)
        return (xhat * weight + bias).square().sum(dim=1, keepdim=True)

    @staticmethod
    def backward(ctx, grad):
        if ctx.kernels is not None:
            x, mean, rstd, weight, bias = ctx.saved_tensors
        else:
            xhat, rstd, weight, bias, x = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: exact higher derivatives
            return reference_backward(_LayerNormSquareSum.reference,
                                      (x, weight, bias, ctx.eps), (grad, ),
                                      ctx.needs_input_grad)
        if ctx.kernels is not None:
            need_x, need_w, need_b = ctx.needs_input_grad[:3]
            grad_x, grad_w, grad_b = ctx.kernels.ln_square_sum_backward(
                x.contiguous(), weight.contiguous(), bias.contiguous(),
                mean, rstd, grad.contiguous(), need_x)
            return (grad_x, grad_w.view_as(weight) if need_w else None,
                    grad_b.view_as(bias) if need_b else None, None)
        gy = torch.mul(xhat, weight).add_(bias).mul_(2 * grad)  # dS/dy
        grad_w = grad_b = None
        if ctx.needs_input_grad[2]:
            grad_b = gy.sum(dim=(0, 1))
        if ctx.needs_input_grad[1]:
            grad_w = (gy * xhat).sum(dim=(0, 1))
        grad_x = None
        if ctx.needs_input_grad[0]:
            g = gy.mul_(weight)  # d/d xhat
            m1 = g.mean(dim=HW_DIMS, keepdim=True)
            m2 = (g * xhat).mean(dim=HW_DIMS, keepdim=True)
            # LayerNorm: rstd * (g - mean(g) - xhat * mean(g * xhat))
            grad_x = g.sub_(m1).sub_(xhat * m2).mul_(rstd)
        return grad_x, grad_w, grad_b, None


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

    def reads(self) -> Reads:
        return frozenset({MAP})  # normalised per position: the map itself

    def forward(self, x, stats=None):
        x = _stats(x, stats).x
        size = x.shape[-2:]
        total = apply(_LayerNormSquareSum, x, resize_to(self.weight, size),
                      resize_to(self.bias, size), self.eps)
        return safe_sqrt(total)


class CovRowConv(nn.Module):
    """BN on a (B, n, n) covariance, row-wise grouped conv, ReLU:
    (B, n, n) -> (B, n, 1, 1)."""

    def __init__(self, n: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(n)
        self.row_conv = nn.Conv2d(n, n, (n, 1), groups=n, bias=False)

    def forward(self, cov):
        b, n, _ = cov.shape
        if self.bn.training and b * n == 1:
            # BN's own message ("Expected more than 1 value per channel")
            # names neither the operation nor the fix.
            raise ValueError(
                'second-order (covariance) pooling on fewer than 8 channels '
                'reduces them to 1, and its BatchNorm then sees one value '
                'per channel with a batch of 1: use a batch of at least 2 in '
                'training, or another operation (cov_pool needs C >= 8 for '
                'batch 1)')
        y = self.bn(cov.view(b, n, n, 1))
        conv = self.row_conv
        if conv.out_channels == n and conv.bias is None:
            # Row i of the covariance dotted with kernel i: a row-wise
            # product and sum, cheaper than a grouped conv on CPU.
            y = (y.view(b, n, n) * conv.weight.view(n, n)).sum(-1)
            return F.relu(y).view(b, n, 1, 1)
        return F.relu(conv(y))


def _pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A bias-free 1x1 conv on a (B, C, 1, 1) map as a linear layer."""
    return F.linear(x.flatten(1), conv.weight.flatten(1)).view(
        x.shape[0], -1, 1, 1)


def _pool_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) averaging matrix of adaptive average pooling.

    Output i averages inputs floor(i * n_in / n_out) to
    ceil((i + 1) * n_in / n_out) - 1, as ``F.adaptive_avg_pool*`` does (it
    also upsamples when n_out > n_in).
    """
    i = torch.arange(n_out, device=like.device).unsqueeze(1)
    start = (i * n_in) // n_out
    # Ceil division written for non-negative operands: exported, an integer
    # division truncates (ONNX Div), which -(-a // b) would get wrong.
    end = ((i + 1) * n_in + n_out - 1) // n_out
    j = torch.arange(n_in, device=like.device)
    inside = (j >= start) & (j < end)
    return inside.to(like.dtype) / (end - start).to(like.dtype)


@functools.lru_cache(maxsize=64)
def _cached_pool_matrix(n_in: int, n_out: int, dtype: torch.dtype,
                        device: torch.device) -> torch.Tensor:
    """:func:`_pool_matrix`, built once per sizes, dtype and device."""
    # A normal tensor even when first asked for under inference_mode: an
    # inference tensor could not be saved for a later backward pass.
    with torch.inference_mode(False):
        return _pool_matrix(n_in, n_out, torch.empty((), dtype=dtype,
                                                     device=device))


class _WindowMean(torch.autograd.Function):
    """Means of whole kh x kw windows: (M, H, W) -> (M, H / kh, W / kw).

    ``F.avg_pool2d(x, (kh, kw))`` on CPU float32 / float64, by the compiled
    ``window_mean`` kernels (``csrc/sase_stats.cpp``: one pass forward, one
    write of the spread gradient backward); ATen's pooling kernels, forward
    and backward, took 4-5x longer on the supernet's 32 x 32 maps.
    """

    @staticmethod
    def forward(ctx, x, kh, kw):
        ctx.window, ctx.kernels = (kh, kw), stats_kernels_for(x)
        return ctx.kernels.window_mean(x.contiguous(), kh, kw)

    @staticmethod
    def reference(x, kh, kw):
        return F.avg_pool2d(x, (kh, kw))

    @staticmethod
    def backward(ctx, grad):
        kh, kw = ctx.window
        if torch.is_grad_enabled():  # create_graph: a differentiable form
            # The map is linear: its gradient is the adjoint applied to
            # grad, each value / (kh kw) over its window (an expanded view).
            m, oh, ow = grad.shape
            spread = grad[:, :, None, :, None].expand(m, oh, kh, ow, kw)
            return spread.reshape(m, oh * kh, ow * kw) / (kh * kw), None, None
        return (ctx.kernels.window_mean_backward(grad.contiguous(), kh, kw),
                None, None)


def adaptive_avg_pool(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, size)``, in its fastest exact form.

    x: (..., H, W) -> (..., oh, ow). In eager mode: a same-size input is
    returned as it is; a whole number of input positions per output
    (H, W multiples of oh, ow) is the mean of each window, by the compiled
    ``window_mean`` kernels on CPU (:class:`_WindowMean`), else
    ``F.avg_pool2d`` with that window (a reshape and mean, or a broadcast
    backward, measured slower); a whole
    number of outputs per input (an upsampling by integer factors) is a
    repetition (an expanded view, reshaped); other sizes are two
    small matrix products, P_h @ x @ P_w^T, with the pooling matrices
    cached per sizes, dtype and device (the CPU adaptive pooling kernels,
    forward and backward, are many times slower on these shapes). While
    exportable or compiling, the matrix products with matrices built in
    the graph (a tracing exporter would freeze the shape tests; the
    identity is then a product too while exportable).
    """
    *lead, h, w = x.shape
    oh, ow = size
    if is_exportable() or torch.compiler.is_compiling():
        if not is_exportable() and (h, w) == (oh, ow):
            return x
        pool_w, pool_h = _pool_matrix(w, ow, x), _pool_matrix(h, oh, x)
    elif (h, w) == (oh, ow):
        return x
    elif h % oh == 0 and w % ow == 0:
        kernels = stats_kernels_for(x)
        if kernels is not None and x.numel() > 0:
            y = _WindowMean.apply(x.reshape(-1, h, w), h // oh, w // ow)
        else:
            y = F.avg_pool2d(x.reshape(-1, h, w), (h // oh, w // ow))
        return y.view(*lead, oh, ow)
    elif oh % h == 0 and ow % w == 0:
        y = x.reshape(-1, h, 1, w, 1).expand(-1, h, oh // h, w, ow // w)
        return y.reshape(*lead, oh, ow)
    else:
        pool_w = _cached_pool_matrix(w, ow, x.dtype, x.device)
        pool_h = _cached_pool_matrix(h, oh, x.dtype, x.device)
    y = x.reshape(-1, w) @ pool_w.t()  # (..., h, ow)
    y = pool_h @ y.view(-1, h, ow)  # (..., oh, ow)
    return y.view(*lead, oh, ow)


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

    def reads(self) -> Reads:
        return frozenset({MAP})

    def forward(self, x, stats=None):
        x = _stats(x, stats).x
        b, c, h, w = x.shape
        r = self.reduced
        if c % r == 0:
            z = x.reshape(b, r, c // r, h * w).mean(2)
        else:
            z = F.adaptive_avg_pool1d(x.reshape(b, c, h * w).transpose(1, 2),
                                      r).transpose(1, 2)
        z = z - z.mean(-1, keepdim=True)
        cov = torch.bmm(z, z.transpose(1, 2)) / max(r - 1, 1)
        return _pointwise(self.expand, self.cov(cov))


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

    def reads(self) -> Reads:
        return frozenset({MAP})

    def forward(self, x, stats=None):
        x = _stats(x, stats).x
        b, c, h, w = x.shape
        g = self.GRID
        z = adaptive_avg_pool(x, (g, g)).reshape(b, c, g * g).transpose(1, 2)
        z = z - z.mean(-1, keepdim=True)
        cov = torch.bmm(z, z.transpose(1, 2)) / (g * g - 1)
        y = _pointwise(self.proj, self.cov(cov)).view(b, 1, g, g)
        return adaptive_avg_pool(y, (h, w))
