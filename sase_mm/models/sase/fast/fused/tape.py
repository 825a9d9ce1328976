"""Statistics capture of the fused SASE block: the tape.

SASE (arXiv 2411.08333). The fused node (``node.py``) computes the large
reductions of the block input x outside autograd and hands them to the
small part of the block (excitations, mixer) as leaves of a graph of its
own. :class:`_TapeStats` is the :class:`FeatureStats` that does so: each
statistic it hands out is recorded on the :class:`_Tape` as an
:class:`_Entry` (its kind, dims, the leaves and what its closed-form
gradient needs), which ``input_grad.py`` and ``dispatch.py`` turn into
dL/dx. Anything that would need the full map raises :class:`NotFusable`.
"""
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Tuple

import torch
from torch.autograd.function import once_differentiable

from ....layers.dims import HW_DIMS, Dims
from ....layers.statistics import FeatureStats, _flat, _sum

# Squeeze operations (readable names) that read only the statistics above:
# E0 and E4 squeeze x, E3 the gated map g * x, whose statistics over C are
# products with g (sums and fourth powers; its max or central moments over
# C would need the full map).
FUSABLE: Dict[int, FrozenSet[str]] = {
    0: frozenset({'gap', 'l2_norm', 'l4_pool', 'gap_gmp', 'gap_std',
                  'gap_skew'}),
    3: frozenset({'gap', 'l4_pool'}),
    4: frozenset({'gap', 'l4_pool', 'gap_gmp', 'gap_std', 'gap_skew'}),
}


def fusable(genotype) -> bool:
    """Whether the block of ``genotype`` (edge ops, readable names) fuses."""
    return all(genotype[i] in ops for i, ops in FUSABLE.items())


class NotFusable(RuntimeError):
    """An operation asked for more than the statistics the fused path has."""


class _Entry(NamedTuple):
    kind: str  # sum, amax, pow4, central, gsum, gpow4
    dims: Dims
    outs: Tuple[torch.Tensor, ...]  # what the small graph differentiates
    aux: Tuple[torch.Tensor, ...] = ()  # values the closed form needs


class _Tape:
    """The statistics handed to the small graph, and their closed forms."""

    def __init__(self, x: torch.Tensor, kernels=None):
        self.x = x  # detached
        self.kernels = kernels  # compiled kernels (``../kernels.py``) or None
        self.entries: List[_Entry] = []
        self._x4: Optional[torch.Tensor] = None
        self._row_stats: Optional[Tuple[torch.Tensor, ...]] = None

    def release(self):
        """Drops x^4 (the entries keep only small tensors)."""
        self._x4 = None

    def row_stats(self) -> Tuple[torch.Tensor, ...]:
        """(sum, max, number of maxima) over H, W, each (B, C, 1, 1), in one
        pass of the compiled kernel."""
        if self._row_stats is None:
            b, c = self.x.shape[:2]
            self._row_stats = tuple(
                t.view(b, c, 1, 1) for t in self.kernels.row_stats(self.x))
        return self._row_stats

    def x4(self) -> torch.Tensor:
        """x^4 as two squarings (shared by every fourth-power statistic)."""
        if self._x4 is None:
            t = self.x * self.x
            self._x4 = t.mul_(t)
        return self._x4

    def leaf(self, kind, dims, *values, aux=()) -> Tuple[torch.Tensor, ...]:
        leaves = tuple(v.requires_grad_() for v in values)
        self.entries.append(_Entry(kind, tuple(dims), leaves, tuple(aux)))
        return leaves

    def stats(self, x: torch.Tensor) -> '_TapeStats':
        return _TapeStats(self, None)

    def gated(self, x: torch.Tensor, gate: torch.Tensor) -> '_TapeStats':
        return _TapeStats(self, gate)


class _WeightedPow4SumC(torch.autograd.Function):
    """sum_c w[b, c] x[b, c, n]^4 -> (B, H*W) by the compiled kernels, for
    w (B, C) in the small graph and x the tape's constant map; no x^4 map.

    Only ever differentiated once: a second derivative of the fused block
    recomputes it with plain autograd (``_plain_backward``).
    """

    @staticmethod
    def forward(ctx, w, tape):
        ctx.tape = tape
        return tape.kernels.gated_pow4_sum(tape.x, w.contiguous())

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        tape = ctx.tape
        return tape.kernels.pow4_rowdot(tape.x, grad.contiguous()), None


class _TapeStats(FeatureStats):
    """:class:`FeatureStats` whose reductions are leaves of the small graph.

    The statistics of x are computed outside autograd and made leaves; those
    of the gated map are products of x (a constant here) with the gate, which
    stays in the small graph. Anything needing the full map raises
    :class:`NotFusable`.
    """

    def __init__(self, tape: _Tape, gate: Optional[torch.Tensor]):
        super().__init__(None)
        self._tape = tape
        self._base, self._gate = tape.x, gate

    @property
    def x(self):
        raise NotFusable('the fused SASE block has statistics only, not the '
                         'feature map')

    @property
    def shape(self) -> torch.Size:
        return self._base.shape

    def _gated(self, dims) -> bool:
        if self._gate is None:
            return False
        if not self._gated_over_c(dims):
            raise NotFusable(f'no fused statistic of the gated map over '
                             f'{dims}')
        return True

    def sum(self, dims):
        def compute():
            if self._gated(dims):
                b, c, h, w = self._base.shape
                out = torch.bmm(self._gate.reshape(b, 1, c),
                                _flat(self._base)).view(b, 1, h, w)
                self._tape.entries.append(_Entry(
                    'gsum', tuple(dims), (out, ), (self._gate.detach(), )))
                return out
            if self._tape.kernels is not None and tuple(dims) == HW_DIMS:
                value = self._tape.row_stats()[0].clone()
            else:
                value = _sum(self._base, dims)
            return self._tape.leaf('sum', dims, value)[0]

        return self._get(('sum', dims), compute)

    def amax(self, dims):
        def compute():
            if self._gate is not None:
                raise NotFusable('no fused maximum of the gated map')
            if self._tape.kernels is not None and tuple(dims) == HW_DIMS:
                _, value, count = self._tape.row_stats()
                return self._tape.leaf('amax', dims, value.clone(),
                                       aux=(count, ))[0]
            return self._tape.leaf(
                'amax', dims, self._base.amax(dim=dims, keepdim=True))[0]

        return self._get(('amax', dims), compute)

    def mean_amax(self, dims):
        return self.mean(dims), self.amax(dims)

    def pow4_sum(self, dims):
        def compute():
            if self._gated(dims):
                b, c, h, w = self._base.shape
                g4 = self._gate.reshape(b, 1, c).square().square()
                if self._tape.kernels is not None:
                    out = _WeightedPow4SumC.apply(g4.view(b, c), self._tape)
                    out = out.view(b, 1, h, w)
                else:
                    out = torch.bmm(g4, _flat(self._tape.x4())).view(
                        b, 1, h, w)
                self._tape.entries.append(_Entry(
                    'gpow4', tuple(dims), (out, ), (self._gate.detach(), )))
                return out
            return self._tape.leaf('pow4', dims,
                                   _sum(self._tape.x4(), dims))[0]

        return self._get(('pow4', dims), compute)

    def central_sums(self, dims):
        def compute():
            if self._gate is not None:
                raise NotFusable('no fused central moments of the gated map')
            mean = self.mean(dims).detach()
            d = self._base - mean
            t = d * d
            s2 = _sum(t, dims)
            s3 = _sum(t.mul_(d), dims)
            return self._tape.leaf('central', dims, s2, s3,
                                   aux=(mean, s2.detach().clone()))

        return self._get(('central_sums', dims), compute)
