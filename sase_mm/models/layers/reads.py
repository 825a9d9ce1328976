"""What a squeeze operation reads: statistics by kind and dims, or the map.

SASE (arXiv 2411.08333). Each squeeze operation (``squeeze.py``) declares
what it reads from its :class:`~.feature_stats.FeatureStats` (``reads()``,
a set of :class:`Read`): a statistic's ``kind`` (the ``kind`` of a class of
``stat_formulas.py``) over some dims, or the map itself (:data:`MAP`).
Which operations the fused SASE block can run on statistics alone is
derived from these declarations (``sase/fast/fused/tape.py``).
"""
from typing import FrozenSet, NamedTuple, Optional

from .dims import Dims


class Read(NamedTuple):
    """One thing a squeeze operation reads from its ``FeatureStats``: a
    statistic's ``kind`` over ``dims``, or the map itself (:data:`MAP`)."""
    kind: str  # 'sum', 'amax', 'pow4', 'central' or 'map'
    dims: Optional[Dims] = None


#: The feature map itself (``FeatureStats.x``): nothing a fast path can
#: describe by statistics.
MAP = Read('map')


def reading(dims: Dims, *stats) -> FrozenSet[Read]:
    """The reads of the statistics ``stats`` (classes of
    ``stat_formulas.py``, by their ``kind``) over ``dims``."""
    return frozenset(Read(s.kind, tuple(dims)) for s in stats)
