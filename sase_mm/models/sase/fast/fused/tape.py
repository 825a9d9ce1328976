"""Statistics capture of the fused SASE block (the tape), and what it fuses.

SASE (arXiv 2411.08333). The fused node (``node.py``) computes the large
reductions of the block input x outside autograd and hands them to the
small part of the block (excitations, mixer) as leaves of a graph of its
own. :class:`_TapeStats` is the :class:`FeatureStats` that does so: each
statistic it hands out is computed by that statistic's own ``value``
(``layers/stat_formulas.py``; over H, W, and the sums over C, by the
compiled ``row_stats`` kernel where it runs, in one pass) and recorded on
the :class:`_Tape` as an :class:`_Entry` (the statistic, its leaves, and
what its ``input_grad`` needs), which ``input_grad.py`` and ``dispatch.py``
turn into dL/dx. Anything else raises :class:`NotFusable`.

What the tape has is stated once (:func:`_has`): every statistic of x, and
of the gated map ``g * x`` only its products with the gate over C (sums and
fourth-power sums; its maxima or central moments would need the map).
:data:`FUSABLE` follows from that, from which map each squeeze edge reads
(read off ``dag.sase_maps`` itself) and from what each squeeze operation
declares it reads (``reads()`` in ``layers/squeeze.py``); an operation that
declares nothing fails this module's import.
"""
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Sequence, \
    Tuple

import torch
from torch.autograd.function import once_differentiable

from ....layers.dims import C_DIMS, HW_DIMS, Dims
from ....layers.feature_stats import FeatureStats
from ....layers.grad_terms import Term
from ....layers.reads import MAP, Read
from ....layers.stat_formulas import (Amax, CentralSums, GatedPow4SumC,
                                      GatedSumC, Pow4Sum, Sum)
from ....layers.stat_functions import gated_sum_c
from ...dag import sase_maps
from ...space import EDGES, Edge, OpSet

# --------------------------------------------------------------------------
# What the tape has, and which squeeze operations that covers.
# --------------------------------------------------------------------------
_X_KINDS = frozenset({Sum.kind, Amax.kind, Pow4Sum.kind, CentralSums.kind})
_GATED_KINDS = frozenset({GatedSumC.kind, GatedPow4SumC.kind})


def _has(source: str, read: Read) -> bool:
    """Whether the tape has ``read`` of the map ``source``: ``'x'`` (the
    block input) or ``'gated'`` (the gated map g * x)."""
    if source == 'x':
        return read.kind in _X_KINDS
    return read.kind in _GATED_KINDS and read.dims == C_DIMS


def squeezed_maps() -> Dict[int, str]:
    """Edge index -> ``'x'`` or ``'gated'``, for the edges that squeeze a
    map (the others get no statistics), as ``sase_maps`` wires them."""
    seen: Dict[int, str] = {}

    def edge(i, inp, stats):
        if stats is not None:
            seen[i] = stats
        return None

    sase_maps(None, edge, lambda a, b: None, stats=lambda x: 'x',
              gated=lambda x, gate: 'gated')
    return seen


def op_reads(op_set: OpSet, name: str) -> FrozenSet[Read]:
    """What operation ``name`` of ``op_set`` declares it reads.

    Raises:
        TypeError: when its class declares nothing (no ``reads()``).
    """
    with torch.device('meta'):  # no memory, no draw from the RNG
        module = op_set.build(name, 8)
    reads = getattr(module, 'reads', None)
    if not callable(reads):
        raise TypeError(
            f'{op_set.name} operation {name!r} ({type(module).__name__}) '
            f'does not declare what it reads: give it a reads() method '
            f'(layers/squeeze.py), returning reads.reading(...) or '
            f'{{reads.MAP}}, so the fused SASE block knows whether it '
            f'can run it')
    return frozenset(reads())


def derive_fusable(
        edges: Sequence[Edge] = EDGES) -> Dict[int, FrozenSet[str]]:
    """Squeeze edge index -> the operations (readable names) of its set that
    read only what the tape has of that edge's map."""
    return {
        i: frozenset(name for name in edges[i].op_set.names
                     if all(_has(source, r)
                            for r in op_reads(edges[i].op_set, name)))
        for i, source in sorted(squeezed_maps().items())
    }


#: Squeeze operations (readable names) the fused block runs, by edge.
FUSABLE: Dict[int, FrozenSet[str]] = derive_fusable()


def fusable(genotype) -> bool:
    """Whether the block of ``genotype`` (edge ops, readable names) fuses."""
    return all(genotype[i] in ops for i, ops in FUSABLE.items())


class NotFusable(RuntimeError):
    """An operation asked for more than the statistics the fused path has."""


# --------------------------------------------------------------------------
# The tape.
# --------------------------------------------------------------------------
class _Entry(NamedTuple):
    stat: type  # a statistic of layers/stat_formulas.py
    outs: Tuple[torch.Tensor, ...]  # what the small graph differentiates
    saved: tuple = ()  # stat.input_grad's arguments before the gradients

    def terms(self, grads: Sequence[Optional[torch.Tensor]]) -> List[Term]:
        """dL/dx terms for the gradients ``grads`` of ``outs``."""
        return self.stat.input_grad(*self.saved, *grads)


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
        """(sum, max, number of maxima) over H, W, each (B, C, 1, 1), and
        the sum over C (B, 1, H, W), in one pass of the compiled kernel."""
        if self._row_stats is None:
            b, c, h, w = self.x.shape
            *rows, col = self.kernels.row_stats(self.x)
            self._row_stats = (*(t.view(b, c, 1, 1) for t in rows),
                               col.view(b, 1, h, w))
        return self._row_stats

    def x4(self) -> torch.Tensor:
        """x^4, shared by every fourth-power statistic."""
        if self._x4 is None:
            self._x4 = Pow4Sum.pow4(self.x)
        return self._x4

    def leaf(self, stat, values, saved=()) -> Tuple[torch.Tensor, ...]:
        """Records ``values`` of ``stat`` as leaves of the small graph."""
        leaves = tuple(v.requires_grad_() for v in values)
        self.record(stat, leaves, saved)
        return leaves

    def record(self, stat, outs, saved=()):
        self.entries.append(_Entry(stat, tuple(outs), tuple(saved)))

    def stats(self, x: torch.Tensor) -> '_TapeStats':
        return _TapeStats(self, None)

    def gated(self, x: torch.Tensor, gate: torch.Tensor) -> '_TapeStats':
        return _TapeStats(self, gate)


class _WeightedPow4SumC(torch.autograd.Function):
    """:class:`GatedPow4SumC` of the tape's constant map for weights w
    (B, C, 1, 1) in the small graph: by the compiled ``gated_pow4_sum`` /
    ``pow4_rowdot`` (no x^4 map) or by its Python definition on the tape's
    shared x^4.

    Only ever differentiated once: a second derivative of the fused block
    recomputes it with plain autograd (``_plain_backward``).
    """

    @staticmethod
    def forward(ctx, w, tape):
        ctx.tape = tape
        x, k = tape.x, tape.kernels
        if k is None:
            return GatedPow4SumC.value(x, w, tape.x4())
        b, c, h, wd = x.shape
        return k.gated_pow4_sum(x, w.reshape(b, c).contiguous()).view(
            b, 1, h, wd)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        tape = ctx.tape
        x, k = tape.x, tape.kernels
        if k is None:
            return GatedPow4SumC.weight_grad(tape.x4(), grad), None
        b, c = x.shape[:2]
        return k.pow4_rowdot(x, grad.reshape(b, -1).contiguous()).view(
            b, c, 1, 1), None


class _TapeStats(FeatureStats):
    """:class:`FeatureStats` whose reductions are leaves of the small graph.

    The statistics of x are computed outside autograd and made leaves; those
    of the gated map are products of x (a constant here) with the gate, which
    stays in the small graph. Anything the tape does not have (:func:`_has`)
    raises :class:`NotFusable`.
    """

    def __init__(self, tape: _Tape, gate: Optional[torch.Tensor]):
        super().__init__(None)
        self._tape = tape
        self._base, self._gate = tape.x, gate
        self._source = 'x' if gate is None else 'gated'

    def _require(self, read: Read):
        if not _has(self._source, read) or (
                self._gate is not None and not self._gated_over_c(read.dims)):
            what = ('the feature map' if read == MAP else
                    f'{read.kind!r} over {read.dims}')
            raise NotFusable(f'the fused SASE block has no {what} of the '
                             f'{self._source} map')

    @property
    def x(self):
        self._require(MAP)

    @property
    def shape(self) -> torch.Size:
        return self._base.shape

    def _over_hw(self, dims: Dims) -> bool:
        """Whether the compiled ``row_stats`` computes this statistic."""
        return self._tape.kernels is not None and tuple(dims) == HW_DIMS

    def _over_c(self, dims: Dims) -> bool:
        """Whether the compiled ``row_stats`` computes this sum."""
        return self._tape.kernels is not None and tuple(dims) == C_DIMS

    def sum(self, dims):
        def compute():
            self._require(Read(Sum.kind, tuple(dims)))
            if self._gate is not None:
                out = gated_sum_c(self._base, self._gate)
                self._tape.record(GatedSumC, (out, ), (self._gate.detach(), ))
                return out
            value = (self._tape.row_stats()[0].clone() if self._over_hw(dims)
                     else self._tape.row_stats()[3].clone()
                     if self._over_c(dims) else Sum.value(self._base, dims))
            return self._tape.leaf(Sum, (value, ))[0]

        return self._get(('sum', dims), compute)

    def amax(self, dims):
        def compute():
            self._require(Read(Amax.kind, tuple(dims)))
            ties = None  # counted from x in the backward pass
            if self._over_hw(dims):
                _, value, ties, _ = self._tape.row_stats()
                value = value.clone()
            else:
                value = Amax.value(self._base, dims)
            return self._tape.leaf(
                Amax, (value, ), (value.detach(), tuple(dims), ties))[0]

        return self._get(('amax', dims), compute)

    def mean_amax(self, dims):
        return self.mean(dims), self.amax(dims)

    def pow4_sum(self, dims):
        def compute():
            self._require(Read(Pow4Sum.kind, tuple(dims)))
            if self._gate is not None:
                w = GatedPow4SumC.weights(self._gate)
                out = _WeightedPow4SumC.apply(w, self._tape)
                self._tape.record(GatedPow4SumC, (out, ), (w.detach(), ))
                return out
            value = Pow4Sum.value(self._base, dims, self._tape.x4())
            return self._tape.leaf(Pow4Sum, (value, ))[0]

        return self._get(('pow4', dims), compute)

    def central_sums(self, dims):
        def compute():
            self._require(Read(CentralSums.kind, tuple(dims)))
            mean = self.mean(dims).detach()
            s2, s3 = CentralSums.value(self._base, mean, dims)
            return self._tape.leaf(CentralSums, (s2, s3),
                                   (mean, s2.detach().clone(),
                                    self.count(dims)))

        return self._get(('central_sums', dims), compute)
