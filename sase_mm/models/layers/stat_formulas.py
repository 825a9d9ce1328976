"""The statistics of the squeezes: forward value and input gradient, once.

SASE (Searching Architecture for Squeeze and Excitation, arXiv 2411.08333)
squeezes a feature map with seven candidate poolings per edge, and most of
them start from the same statistics: the sum (mean), the maximum, the
fourth-power sum, the central sums. This module is the one Python home of
each statistic (docs/spec.md section 2): a class per statistic
(:class:`Sum`, :class:`Amax`, :class:`Pow4Sum`, :class:`CentralSums`, and
for the gated map :class:`GatedSumC`, :class:`GatedPow4SumC`) holds its
forward ``value`` and its closed-form ``input_grad``, which returns the
gradient as terms of ``grad_terms.py``. Their users: the statistics'
autograd Functions (``stat_functions.py``) and the fused SASE node
(``sase/fast/fused/``). The compiled kernels (``sase/fast/csrc/
sase_fused.cpp``, ``csrc/sase_stats.cpp``) are the only other copies;
``tests/models/sase/fast/test_fused.py`` and
``tests/models/layers/test_compiled.py`` pair each kernel with the
definition here that it restates.

The squeezed input of edge E3 is the gated map ``s3 = gate * x`` (gate of
shape (B, C, 1, 1)): the spatial sum and the L4 sum over C of ``gate * x``
are batched matrix products against ``x`` (``sum_c g_c x_c`` and
``sum_c g_c^4 x_c^4``), so the gated statistics never form the product.
"""
from typing import List, Optional, Tuple

import torch

from .dims import C_DIMS, Dims
from .grad_terms import AtMax, Broadcast, Centred, Cube, Term, max_indicator


def _flat(x: torch.Tensor) -> torch.Tensor:
    b, c = x.shape[:2]
    return x.reshape(b, c, -1)


def bmm_sum_c(x: torch.Tensor) -> torch.Tensor:
    """sum over C as a batched product with ones: (B, C, H, W) -> (B, 1, H, W).

    A matrix product reads x once at full bandwidth; ``x.sum(1)`` reduces
    over a strided axis and is several times slower on CPU.
    """
    b, c, h, w = x.shape
    return torch.bmm(x.new_ones(b, 1, c), _flat(x)).view(b, 1, h, w)


class Sum:
    """sum over ``dims``, keepdim. d/dx = g, broadcast.

    (The mean is this sum over n: its gradient is ``input_grad(g / n)``.)
    """
    kind = 'sum'

    @staticmethod
    def value(x: torch.Tensor, dims: Dims) -> torch.Tensor:
        if tuple(dims) == C_DIMS and x.dim() == 4:
            return bmm_sum_c(x)
        return x.sum(dim=dims, keepdim=True)

    @staticmethod
    def input_grad(g: torch.Tensor) -> List[Term]:
        return [Broadcast((g, ))]


class Amax:
    """max over ``dims``, keepdim. d/dx = g / n_ties at the maxima (as
    ``torch.amax``), 0 elsewhere."""
    kind = 'amax'

    @staticmethod
    def value(x: torch.Tensor, dims: Dims) -> torch.Tensor:
        return x.amax(dim=dims, keepdim=True)

    @staticmethod
    def ties(x: torch.Tensor, m: torch.Tensor, dims: Dims) -> torch.Tensor:
        """Number of maxima over ``dims`` (reduced shape, x's dtype)."""
        return max_indicator(x, m).sum(dim=dims, keepdim=True)

    @staticmethod
    def input_grad(m: torch.Tensor, dims: Dims,
                   ties: Optional[torch.Tensor],
                   g: torch.Tensor) -> List[Term]:
        """``m`` the maximum, ``ties`` its count if known (else None)."""
        return [AtMax(m, g, tuple(dims), ties)]


class Pow4Sum:
    """sum over ``dims`` of x^4, keepdim. d/dx = 4 x^3 g."""
    kind = 'pow4'

    @staticmethod
    def pow4(x: torch.Tensor) -> torch.Tensor:
        """x^4 as two squarings (``pow(x, 4)`` takes the slow generic path)."""
        t = x * x
        return t.mul_(t)

    @staticmethod
    def value(x: torch.Tensor, dims: Dims,
              x4: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x4``: x^4 if already computed (shared by several statistics)."""
        return Sum.value(Pow4Sum.pow4(x) if x4 is None else x4, dims)

    @staticmethod
    def input_grad(g: torch.Tensor) -> List[Term]:
        return [Cube((4 * g, ))]


class CentralSums:
    """(S2, S3) = (sum d^2, sum d^3) over ``dims``, keepdim, d = x - mean.

    With sum d = 0, the mean's own gradient path included::

        dS2/dx = 2 d,    dS3/dx = 3 d^2 - 3 S2 / n
    """
    kind = 'central'

    @staticmethod
    def value(x: torch.Tensor, mean: torch.Tensor,
              dims: Dims) -> Tuple[torch.Tensor, torch.Tensor]:
        """``mean``: the mean of x over ``dims`` (keepdim)."""
        d = x - mean
        t = d * d
        s2 = Sum.value(t, dims)
        return s2, Sum.value(t.mul_(d), dims)

    @staticmethod
    def input_grad(mean: torch.Tensor, s2: torch.Tensor, n: int,
                   g2: Optional[torch.Tensor],
                   g3: Optional[torch.Tensor]) -> List[Term]:
        """``n`` elements per statistic; either gradient may be None."""
        if g2 is None and g3 is None:
            return []
        if g3 is None:
            return [Centred(mean, g2, None)]
        return [Centred(mean, g2, g3), Broadcast((-3 * g3 * s2 / n, ))]


class GatedSumC:
    """sum over C of ``gate * x``: (B, C, H, W), gate (B, C, 1, 1) ->
    (B, 1, H, W), without forming the product. d/dx = gate_c g_hw;
    d/dgate = sum_hw x g."""
    kind = Sum.kind  # the sum statistic, of the gated map

    @staticmethod
    def value(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return torch.bmm(gate.reshape(b, 1, c), _flat(x)).view(b, 1, h, w)

    @staticmethod
    def input_grad(gate: torch.Tensor, g: torch.Tensor) -> List[Term]:
        return [Broadcast((gate, g))]

    @staticmethod
    def gate_grad(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """sum over H, W of x * g: (B, C, 1, 1) for g (B, 1, H, W)."""
        b, c = x.shape[:2]
        return torch.bmm(g.reshape(b, 1, -1), _flat(x).transpose(1, 2)).view(
            b, c, 1, 1)


class GatedPow4SumC:
    """sum over C of ``w * x^4`` for weights w (B, C, 1, 1): with
    w = gate^4 it is sum_c (gate_c x_c)^4, the L4 sum of the gated map
    (a :class:`GatedSumC` of x^4). d/dx = 4 w_c x^3 g_hw;
    d/dw = sum_hw x^4 g."""
    kind = Pow4Sum.kind  # the fourth-power sum, of the gated map

    @staticmethod
    def weights(gate: torch.Tensor) -> torch.Tensor:
        """w = gate^4, the weights of the gated map's L4 sum."""
        return gate.square().square()

    @staticmethod
    def value(x: torch.Tensor, w: torch.Tensor,
              x4: Optional[torch.Tensor] = None) -> torch.Tensor:
        return GatedSumC.value(Pow4Sum.pow4(x) if x4 is None else x4, w)

    @staticmethod
    def input_grad(w: torch.Tensor, g: torch.Tensor) -> List[Term]:
        return [Cube((4 * w, g))]

    @staticmethod
    def weight_grad(x4: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """sum over H, W of x^4 * g: (B, C, 1, 1); x4 = x^4."""
        return GatedSumC.gate_grad(x4, g)
