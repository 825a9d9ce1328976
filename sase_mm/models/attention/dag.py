"""The SASE block's DAG, shared by the searchable and the fixed block.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333); the graph is SASE-SPEC section 1::

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
import torch.nn.functional as F

from .stats import FeatureStats

EdgeFn = Callable[[int, torch.Tensor, Optional[FeatureStats]], torch.Tensor]


class SpatialMixer(nn.Sequential):
    """M: Conv2d(2 -> 1, 1x1, no bias), BatchNorm2d(1), ReLU.

    The BN has no affine parameters during search and has them in the
    derived block (SASE-SPEC section 1). Keys ``0.weight`` and ``1.*`` match
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


def sase_dag(x: torch.Tensor, edge: EdgeFn,
             mixer: SpatialMixer) -> torch.Tensor:
    """Evaluates the block on x (B, C, H, W) -> (B, C, H, W)."""
    stats_x = FeatureStats(x)  # shared by E0 (over H, W) and E4 (over C)
    s1 = edge(0, x, stats_x)
    s2 = edge(1, s1, None)
    s3 = edge(2, s1, None) * x
    s4 = mixer(edge(3, s3, FeatureStats(s3)), edge(4, x, stats_x))
    s5 = edge(5, s4, None)
    # x * (s2 + s5) / 2 + x in one fused kernel; * 0.5 is exact.
    return torch.addcmul(x, x, s2 + s5, value=0.5)
