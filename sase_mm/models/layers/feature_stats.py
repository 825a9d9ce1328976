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
"""
from typing import Dict, Optional, Tuple

import torch

from .dims import C_DIMS, Dims, count
from .numerics import safe_sqrt
from .stat_functions import (central_sums, gated_pow4_sum_c, gated_sum_c,
                             mean_amax, pow4_sum, sum_keepdim)


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
