"""The SASE block's DAG, shared by the searchable and the fixed block.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333); the graph is docs/spec.md section 1::

    s1 = E0(x)                              (B, C, 1, 1)
    s2 = E1(s1)                             (B, C, 1, 1)  channel map
    s3 = E2(s1) * x                         (B, C, H, W)  gated input
    s4 = M(cat[E3(s3), E4(x)])              (B, 1, H, W)
    s5 = E5(s4)                             (B, 1, H, W)  spatial map
    out = x * (s2 + s5) / 2 + x

Only how an edge is evaluated differs between the two blocks (a weighted sum
of seven candidates, or one chosen operation), so the graph is written once
here and each block supplies ``edge(i, input, stats)``. The output
``x * (1 + s2 / 2 + s5 / 2)`` and its gradients are defined here once
(:func:`residual_factors`, :func:`residual`, :func:`residual_map_grads`),
for the plain graph and the fused node alike.
"""
from typing import Callable, Optional

import torch
import torch.nn as nn

from ..layers.dims import C_DIMS
from ..layers.feature_stats import FeatureStats
from ..layers.reference import apply, reference_backward
from ..layers.stat_formulas import Sum

EdgeFn = Callable[[int, torch.Tensor, Optional[FeatureStats]], torch.Tensor]


class SpatialMixer(nn.Sequential):
    """M: Conv2d(2 -> 1, 1x1, no bias), BatchNorm2d(1), ReLU.

    The BN has no affine parameters during search and has them in the
    derived block (docs/spec.md section 1). Keys ``0.weight`` and ``1.*`` match
    the reference's ``mixer.0`` / ``mixer.1``.
    """

    def __init__(self, affine: bool):
        super().__init__(
            nn.Conv2d(2, 1, 1, bias=False), nn.BatchNorm2d(1, affine=affine),
            nn.ReLU())

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mixes two (B, 1, H, W) maps (cat[a, b] along channels)."""
        w = self[0].weight.view(2)
        # A 2 -> 1 1x1 conv is w0 * a + w1 * b; skip materialising the cat.
        return self[2](self[1](torch.addcmul(w[0] * a, w[1], b)))


def residual_factors(s2: torch.Tensor, s5: torch.Tensor):
    """(a, b) with 1 + s2 / 2 + s5 / 2 = a + b: a = s2 / 2 + 1 (like s2,
    e.g. (B, C, 1, 1)), b = s5 / 2 (like s5, e.g. (B, 1, H, W))."""
    return s2 * 0.5 + 1.0, s5 * 0.5


def residual(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
             out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x * (a + b)`` for (a, b) from :func:`residual_factors`: the block
    output x * (1 + s2 / 2 + s5 / 2), and (x the output gradient) its input
    gradient along the output path.

    The factor ``a + b`` is written into the result (``out``, or a new
    tensor laid out like x) and multiplied by x in place, so no full-size
    factor outlives the call. The compiled ``scale`` and ``combine`` kernels
    (``fast/csrc/sase_fused.cpp``) restate this.
    """
    if (torch.broadcast_shapes(a.shape, b.shape) != x.shape
            or not a.dtype == b.dtype == x.dtype):
        # Factors that do not span x, or mixed precision: the same product,
        # broadcast and type-promoted by torch.
        return x * (a + b)
    out = torch.empty_like(x) if out is None else out
    return torch.add(a, b, out=out).mul_(x)


def residual_map_grads(grad: torch.Tensor, x: torch.Tensor, shape2, shape5,
                       want2: bool = True, want5: bool = True):
    """(grad * x, dL/ds2, dL/ds5) of ``x * (1 + s2 / 2 + s5 / 2)`` for the
    output gradient ``grad``: half the sums of grad * x to the maps' shapes
    (None where not wanted). The first is a full-size buffer the caller may
    reuse. The compiled ``grad_dots`` kernel restates the two sums.
    """
    buf = torch.mul(grad, x)
    grad_s2 = grad_s5 = None
    if want2:
        # (sum_to_size may return buf itself; the product is a new tensor)
        grad_s2 = buf.sum_to_size(shape2) * 0.5
    if want5:
        if buf.dim() == 4 and tuple(shape5) == (x.shape[0], 1,
                                                *x.shape[2:]):
            grad_s5 = Sum.value(buf, C_DIMS) * 0.5
        else:
            grad_s5 = buf.sum_to_size(shape5) * 0.5
    return buf, grad_s2, grad_s5


class _ScaledResidual(torch.autograd.Function):
    """out = x * (s2 + s5) / 2 + x, as :func:`residual` of the factors.

    x (B, C, H, W), s2 (B, C, 1, 1), s5 (B, 1, H, W). Only x and the two
    small maps are saved; the backward pass reduces ``grad * x`` for the two
    maps and reuses that buffer for the input gradient.
    """

    @staticmethod
    def forward(ctx, x, s2, s5):
        ctx.save_for_backward(x, s2, s5)
        return residual(x, *residual_factors(s2, s5))

    @staticmethod
    def reference(x, s2, s5):
        return x * (s2 + s5) / 2 + x

    @staticmethod
    def backward(ctx, grad):
        x, s2, s5 = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: exact higher derivatives
            return reference_backward(_ScaledResidual.reference, (x, s2, s5),
                                      (grad, ), ctx.needs_input_grad)
        buf, grad_s2, grad_s5 = residual_map_grads(
            grad, x, s2.shape, s5.shape, ctx.needs_input_grad[1],
            ctx.needs_input_grad[2])
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = residual(grad, *residual_factors(s2, s5), out=buf)
        return grad_x, grad_s2, grad_s5


def scaled_residual(x: torch.Tensor, s2: torch.Tensor,
                    s5: torch.Tensor) -> torch.Tensor:
    """The block output ``x * (s2 + s5) / 2 + x`` (docs/spec.md section 1);
    the plain formula while the layers are exportable."""
    return apply(_ScaledResidual, x, s2, s5)


def sase_maps(x: torch.Tensor, edge: EdgeFn, mixer: SpatialMixer,
              stats: Callable[[torch.Tensor], FeatureStats] = FeatureStats,
              gated: Optional[Callable] = None,
              spatial: Optional[Callable] = None):
    """The block's two attention maps for x (B, C, H, W).

    Returns ``(s2, s5)``: the channel map (B, C, 1, 1) and the spatial map
    (B, 1, H, W). E3 receives ``x=None`` and the statistics of the gated
    map ``s3 = E2(s1) * x``, which is built only if E3's operation needs
    it. ``stats(x)`` and ``gated(x, gate)`` make the statistics objects
    (default :class:`FeatureStats`; the fused block passes its own);
    ``spatial(e3, e4)``, when given, computes ``s5 = E5(mixer(e3, e4))``
    from E3's and E4's maps (the fused block's one node for both).
    """
    gated = FeatureStats.gated if gated is None else gated
    stats_x = stats(x)  # shared by E0 (over H, W) and E4 (over C)
    s1 = edge(0, x, stats_x)
    s2 = edge(1, s1, None)
    stats_s3 = gated(x, edge(2, s1, None))
    e3, e4 = edge(3, None, stats_s3), edge(4, x, stats_x)
    if spatial is not None:
        return s2, spatial(e3, e4)
    s5 = edge(5, mixer(e3, e4), None)
    return s2, s5


def sase_dag(x: torch.Tensor, edge: EdgeFn, mixer: SpatialMixer,
             stats: Callable[[torch.Tensor], FeatureStats] = FeatureStats,
             gated: Optional[Callable] = None) -> torch.Tensor:
    """Evaluates the block on x (B, C, H, W) -> (B, C, H, W); ``stats``
    and ``gated`` as in :func:`sase_maps`."""
    return scaled_residual(x, *sase_maps(x, edge, mixer, stats, gated))
