"""What each squeeze operation declares it reads (``reads()``, in the
vocabulary of ``layers/reads.py``), against what its forward pass asks of
its statistics (SASE, arXiv 2411.08333). The fused block's list of what it
can run is derived from these declarations."""
import pytest
from stat_inputs import C, H, W, feature_map

from sase_mm.models.layers import squeeze
from sase_mm.models.layers.dims import C_DIMS, HW_DIMS
from sase_mm.models.layers.feature_stats import FeatureStats
from sase_mm.models.layers.reads import MAP, Read, reading
from sase_mm.models.layers.stat_formulas import (Amax, CentralSums, Pow4Sum,
                                                 Sum)
from sase_mm.models.sase.space import CHANNEL_SQUEEZE, SPATIAL_SQUEEZE


class _Recording(FeatureStats):
    """Records every statistic, and the map, that an operation reads (the
    map only when the operation itself asks: the statistics read it too)."""

    def __init__(self, x):
        super().__init__(x)
        self.seen, self._depth = set(), 0

    @property
    def x(self):
        if not self._depth:
            self.seen.add(MAP)
        return self._x

    def _read(self, method, dims, *kinds):
        self.seen.update(Read(k, tuple(dims)) for k in kinds)
        self._depth += 1
        try:
            return getattr(super(), method)(dims)
        finally:
            self._depth -= 1

    def sum(self, dims):
        return self._read('sum', dims, Sum.kind)

    def amax(self, dims):
        return self._read('amax', dims, Amax.kind)

    def mean_amax(self, dims):
        return self._read('mean_amax', dims, Sum.kind, Amax.kind)

    def pow4_sum(self, dims):
        return self._read('pow4_sum', dims, Pow4Sum.kind)

    def central_sums(self, dims):
        return self._read('central_sums', dims, CentralSums.kind)


SQUEEZES = ([(s.name, n, s.build(n, C, (H, W))) for s in (CHANNEL_SQUEEZE,
                                                           SPATIAL_SQUEEZE)
             for n in s.names] +
            [('extra', f'lp{p}', squeeze.LpPool(d, p=p)) for p in (3, 4)
             for d in (HW_DIMS, C_DIMS)])


@pytest.mark.parametrize('set_name,op,module', SQUEEZES,
                         ids=[f'{s}-{o}' for s, o, _ in SQUEEZES])
def test_squeeze_declares_exactly_what_it_reads(set_name, op, module):
    """``reads()`` is what the forward pass asks of its statistics."""
    stats = _Recording(feature_map().float())
    module(None, stats)
    assert module.reads() == frozenset(stats.seen), (set_name, op)


def test_reading_names_each_kind_over_the_dims():
    assert reading([2, 3], Sum, Amax) == {Read('sum', (2, 3)),
                                          Read('amax', (2, 3))}
    assert MAP.kind == 'map' and MAP.dims is None
