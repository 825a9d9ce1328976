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
here and each block supplies ``edge(i, input, stats)``.
"""
from typing import Callable, Optional

import torch
import torch.nn as nn

from ..layers.statistics import FeatureStats, reference_backward, sum_keepdim

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


class _ScaledResidual(torch.autograd.Function):
    """out = x * (s2 + s5) / 2 + x, as x * (1 + s2 / 2 + s5 / 2).

    x (B, C, H, W), s2 (B, C, 1, 1), s5 (B, 1, H, W). The factor
    m = 1 + s2 / 2 + s5 / 2 is built once and kept for the input gradient
    (grad * m); the backward pass reduces ``grad * x`` over H, W and over C
    for the two maps and reuses that buffer for the input gradient.
    """

    @staticmethod
    def forward(ctx, x, s2, s5):
        m = torch.add(s2 * 0.5 + 1.0, s5 * 0.5)
        ctx.save_for_backward(x, m, s2, s5)
        ctx.shapes = (s2.shape, s5.shape)
        return torch.mul(x, m)

    @staticmethod
    def reference(x, s2, s5):
        return x * (s2 + s5) / 2 + x

    @staticmethod
    def backward(ctx, grad):
        x, m, s2, s5 = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: exact higher derivatives
            return reference_backward(_ScaledResidual.reference, (x, s2, s5),
                                      (grad, ), ctx.needs_input_grad)
        shape2, shape5 = ctx.shapes
        grad_s2 = grad_s5 = None
        buf = torch.mul(grad, x)
        if ctx.needs_input_grad[1]:
            grad_s2 = buf.sum_to_size(shape2) * 0.5  # may alias buf
        if ctx.needs_input_grad[2]:
            if buf.dim() == 4 and tuple(shape5) == (x.shape[0], 1,
                                                    *x.shape[2:]):
                grad_s5 = sum_keepdim(buf, (1, )) * 0.5
            else:
                grad_s5 = buf.sum_to_size(shape5) * 0.5
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mul(grad, m, out=buf)
        return grad_x, grad_s2, grad_s5


def scaled_residual(x: torch.Tensor, s2: torch.Tensor,
                    s5: torch.Tensor) -> torch.Tensor:
    """The block output ``x * (s2 + s5) / 2 + x`` (docs/spec.md section 1)."""
    return _ScaledResidual.apply(x, s2, s5)


def sase_maps(x: torch.Tensor, edge: EdgeFn, mixer: SpatialMixer,
              stats: Callable[[torch.Tensor], FeatureStats] = FeatureStats,
              gated: Optional[Callable] = None):
    """The block's two attention maps for x (B, C, H, W).

    Returns ``(s2, s5)``: the channel map (B, C, 1, 1) and the spatial map
    (B, 1, H, W). E3 receives ``x=None`` and the statistics of the gated
    map ``s3 = E2(s1) * x``, which is built only if E3's operation needs
    it. ``stats(x)`` and ``gated(x, gate)`` make the statistics objects
    (default :class:`FeatureStats`; the fused block passes its own).
    """
    gated = FeatureStats.gated if gated is None else gated
    stats_x = stats(x)  # shared by E0 (over H, W) and E4 (over C)
    s1 = edge(0, x, stats_x)
    s2 = edge(1, s1, None)
    stats_s3 = gated(x, edge(2, s1, None))
    s4 = mixer(edge(3, None, stats_s3), edge(4, x, stats_x))
    s5 = edge(5, s4, None)
    return s2, s5


def sase_dag(x: torch.Tensor, edge: EdgeFn,
             mixer: SpatialMixer) -> torch.Tensor:
    """Evaluates the block on x (B, C, H, W) -> (B, C, H, W)."""
    return scaled_residual(x, *sase_maps(x, edge, mixer))
