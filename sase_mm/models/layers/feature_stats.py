"""The statistics of one feature map, computed once and shared.

SASE (Searching Architecture for Squeeze and Excitation, arXiv 2411.08333)
squeezes a feature map with seven candidate poolings per edge, and most of
them start from the same statistics of the same input: the mean, the
centred map, the variance, the maximum. During search all seven run on one
input, and the channel and spatial squeezes of the block input ``s0``
reduce the same tensor, so one :class:`FeatureStats` per input computes
each statistic once (by its Function, ``stat_functions.py``) and hands it
to every operation that asks. An operation called alone builds its own;
the formulas are the same either way, so the numerics do not depend on
whether the statistics were shared.

The squeezed input of edge E3 is the gated map ``s3 = gate * x``.
:meth:`FeatureStats.gated` describes it without building it: its sum and
L4 sum over C are products of the gate with x (``GatedSumC``,
``GatedPow4SumC``), and ``s3`` itself is materialised only when an
operation needs the full map.

:class:`MomentStats` is the variant of the search block, whose squeeze
edges read every statistic over their dims: told what its readers read
(their ``reads()``, ``reads.py``), it computes all the statistics over
some dims through one node (``stat_functions.moments``) when the first of
them is asked for. The values are the same; the fixed block and the
attention modules keep :class:`FeatureStats`.
"""
from typing import AbstractSet, Dict, FrozenSet, Optional, Set, Tuple

import torch

from .dims import C_DIMS, Dims, count
from .numerics import safe_sqrt
from .reads import MAP, Read
from .stat_formulas import Pow4Sum, Sum
from .stat_functions import (MOMENT_KINDS, central_sums, gated_pow4_sum_c,
                             gated_sum_c, mean_amax, moments, pow4_sum,
                             sum_keepdim)


class FeatureStats:
    """Lazily computed, cached reductions of one tensor.

    Every statistic keeps the reduced dimensions (``keepdim=True``) so it
    broadcasts against ``x``. What each method reads, in the vocabulary of
    the squeeze operations' ``reads()`` (``reads.py``): :meth:`sum`,
    :meth:`mean` the ``'sum'``; :meth:`amax` the ``'amax'``;
    :meth:`mean_amax` both; :meth:`pow4_sum` the ``'pow4'``;
    :meth:`central_sums`, :meth:`var`, :meth:`std_unbiased`,
    :meth:`third_moment` the ``'central'`` and the ``'sum'`` (for the mean);
    :attr:`x` the ``MAP``.

    Args:
        x (Tensor): the feature map, (B, C, H, W).
    """

    def __init__(self, x: Optional[torch.Tensor]):
        self._x = x
        self._base: Optional[torch.Tensor] = None
        self._gate: Optional[torch.Tensor] = None
        self._cache: Dict[tuple, torch.Tensor] = {}

    @classmethod
    def gated(cls, x: torch.Tensor, gate: torch.Tensor) -> 'FeatureStats':
        """Statistics of ``gate * x`` (x (B, C, H, W), gate (B, C, 1, 1)),
        materialising the product only when a statistic needs it."""
        stats = cls(None)
        stats._base, stats._gate = x, gate
        return stats

    @property
    def x(self) -> torch.Tensor:
        """The feature map (for a gated map, built on first use)."""
        if self._x is None:
            self._x = self._gate * self._base
        return self._x

    @property
    def shape(self) -> torch.Size:
        return (self._x if self._x is not None else self._base).shape

    def _get(self, key, fn):
        value = self._cache.get(key)
        if value is None:
            value = fn()
            self._cache[key] = value
        return value

    def _gated_over_c(self, dims: Dims) -> bool:
        return (self._gate is not None and tuple(dims) == C_DIMS
                and self._base.dim() == 4 and self._gate.dim() == 4
                and self._gate.shape[2:] == (1, 1))

    def count(self, dims: Dims) -> int:
        """Number of elements reduced over ``dims`` (the runtime size; a
        0-dim tensor while a tracing exporter records the shapes)."""
        return count(self.shape, dims)

    def sum(self, dims: Dims) -> torch.Tensor:
        def compute():
            if self._gated_over_c(dims):
                return gated_sum_c(self._base, self._gate)
            return sum_keepdim(self.x, dims)

        return self._get(('sum', dims), compute)

    def mean(self, dims: Dims) -> torch.Tensor:
        return self._get(('mean', dims),
                         lambda: self.sum(dims) / self.count(dims))

    def amax(self, dims: Dims) -> torch.Tensor:
        return self._get(('amax', dims),
                         lambda: mean_amax(self.x, dims, False)[1])

    def mean_amax(self, dims: Dims) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(mean(dims), amax(dims))``; computed by one autograd node
        (one gradient tensor for both) unless either is already cached."""
        key_mean, key_max = ('mean', dims), ('amax', dims)
        if key_mean not in self._cache and key_max not in self._cache:
            mean, m = mean_amax(self.x, dims, True)
            self._cache[key_mean], self._cache[key_max] = mean, m
        return self.mean(dims), self.amax(dims)

    def pow4_sum(self, dims: Dims) -> torch.Tensor:
        """sum over ``dims`` of x^4."""
        def compute():
            if self._gated_over_c(dims):
                return gated_pow4_sum_c(self._base, self._gate)
            return pow4_sum(self.x, dims)

        return self._get(('pow4', dims), compute)

    def central_sums(self, dims: Dims) -> Tuple[torch.Tensor, torch.Tensor]:
        """(sum over ``dims`` of (x - mean)^2, of (x - mean)^3), keepdim."""
        return self._get(
            ('central_sums', dims),
            lambda: central_sums(self.x, self.mean(dims).detach(), dims))

    def var(self, dims: Dims) -> torch.Tensor:
        """Biased variance (divides by n), as the normalisation layers use."""
        return self._get(
            ('var', dims),
            lambda: self.central_sums(dims)[0] / self.count(dims))

    def std_unbiased(self, dims: Dims) -> torch.Tensor:
        """Unbiased standard deviation (divides by n - 1).

        With a single element (n = 1) the unbiased estimate is undefined; the
        divisor is clamped to 1 so the result is 0 instead of NaN.
        """
        def compute():
            n = self.count(dims)
            # A traced n is a tensor: clamp it in the graph (a Python max
            # would freeze n - 1 at the export size).
            div = (n - 1).clamp(min=1) if torch.is_tensor(n) else \
                max(n - 1, 1)
            return safe_sqrt(self.central_sums(dims)[0] / div)

        return self._get(('std', dims), compute)

    def third_moment(self, dims: Dims) -> torch.Tensor:
        """Third central moment, mean((x - mean)^3); not divided by std^3."""
        return self._get(
            ('m3', dims),
            lambda: self.central_sums(dims)[1] / self.count(dims))


class MomentStats(FeatureStats):
    """:class:`FeatureStats` that computes all the statistics its readers
    read over some dims at once.

    When a statistic over ``dims`` is first asked for, every statistic of
    :data:`~.stat_functions.MOMENT_KINDS` that ``reads`` names over those
    dims comes from one :func:`~.stat_functions.moments` node (one pass
    over the map forward and one backward with the compiled kernels,
    instead of one or more per statistic). A statistic ``reads`` does not
    name is computed as :class:`FeatureStats` does. For a gated map the
    product ``gate * x`` is built for the moments only when it is built
    anyway (``reads`` names the map itself) or a statistic needs it (a
    maximum or central sums over C); otherwise its sums over C stay
    products with the gate.

    Args:
        x (Tensor): the feature map, (B, C, H, W).
        reads: what the operations that will read these statistics read
            (the union of their ``reads()``).
    """

    def __init__(self, x: Optional[torch.Tensor],
                 reads: AbstractSet[Read] = frozenset()):
        super().__init__(x)
        # Kept as given, not copied: under torch.compile a set made here
        # would have to be rebuilt at a graph break, which dynamo cannot do
        # for a frozenset.
        self._reads = reads
        self._done: Set[Dims] = set()

    @classmethod
    def gated(cls, x: torch.Tensor, gate: torch.Tensor,
              reads: AbstractSet[Read] = frozenset()) -> 'MomentStats':
        """Statistics of ``gate * x`` (x (B, C, H, W), gate (B, C, 1, 1))
        for readers that read ``reads``."""
        stats = cls(None, reads)
        stats._base, stats._gate = x, gate
        return stats

    def planned(self, dims: Dims) -> FrozenSet[str]:
        """The kinds of statistic computed together over ``dims``: those
        the readers read, of :data:`~.stat_functions.MOMENT_KINDS` (empty:
        each is computed on its own)."""
        dims = tuple(dims)
        kinds = frozenset(r.kind for r in self._reads
                          if r.dims == dims) & MOMENT_KINDS
        if kinds and self._gated_over_c(dims) and MAP not in self._reads \
                and kinds <= {Sum.kind, Pow4Sum.kind}:
            return frozenset()  # products with the gate need no g * x
        return kinds

    def _moments(self, dims: Dims):
        """Computes and caches the planned statistics over ``dims``."""
        dims = tuple(dims)
        if dims in self._done:
            return
        self._done.add(dims)
        kinds = self.planned(dims)
        if not kinds:
            return
        st = moments(self.x, dims, kinds)
        self._cache[('sum', dims)] = st.sum
        for key, value in (('amax', st.amax), ('pow4', st.pow4)):
            if value is not None:
                self._cache[(key, dims)] = value
        if st.s2 is not None:
            self._cache[('central_sums', dims)] = (st.s2, st.s3)

    def sum(self, dims: Dims) -> torch.Tensor:
        self._moments(dims)
        return super().sum(dims)

    def amax(self, dims: Dims) -> torch.Tensor:
        self._moments(dims)
        return super().amax(dims)

    def mean_amax(self, dims: Dims) -> Tuple[torch.Tensor, torch.Tensor]:
        self._moments(dims)
        return super().mean_amax(dims)

    def pow4_sum(self, dims: Dims) -> torch.Tensor:
        self._moments(dims)
        return super().pow4_sum(dims)

    def central_sums(self, dims: Dims) -> Tuple[torch.Tensor, torch.Tensor]:
        self._moments(dims)
        return super().central_sums(dims)
