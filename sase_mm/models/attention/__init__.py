"""Deprecated: the SASE search space moved to :mod:`sase_mm.models.sase`.

SASE (arXiv 2411.08333). ``from sase_mm.models.attention import SASE`` and
the old submodules (``op_sets``, ``genotype``, ``operations``, ``stats``,
``dag``, ``sase_block``, ``search_block``, ``fused``, ``batched_edges``,
``arch_params``) keep working for one release; new code imports from
``sase_mm.models.sase`` (the blocks, the space, the genotype) and
``sase_mm.models.layers`` (the operations and statistics).
"""
import importlib
import sys
import warnings

from ..sase import *  # noqa: F401,F403
from ..sase import __all__  # noqa: F401

# Old submodule -> its new home (the same module object).
MOVED = {
    'op_sets': 'sase_mm.models.sase.space',
    'genotype': 'sase_mm.models.sase.genotype',
    'dag': 'sase_mm.models.sase.dag',
    'sase_block': 'sase_mm.models.sase.block',
    'search_block': 'sase_mm.models.sase.supernet',
    'arch_params': 'sase_mm.models.sase.supernet',
    'fused': 'sase_mm.models.sase.fast.fused',
    'batched_edges': 'sase_mm.models.sase.fast.batched_edges',
    'stats': 'sase_mm.models.layers.statistics',
    'operations': 'sase_mm.models.attention.operations',
}
for _old, _new in MOVED.items():
    if _old != 'operations':
        sys.modules[f'{__name__}.{_old}'] = importlib.import_module(_new)

warnings.warn('sase_mm.models.attention is deprecated: import from '
              'sase_mm.models.sase (blocks, space, genotype) and '
              'sase_mm.models.layers (operations, statistics)',
              DeprecationWarning, stacklevel=2)
