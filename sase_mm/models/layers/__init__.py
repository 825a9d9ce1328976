"""The shared bottom of sase_mm's models: plain PyTorch attention layers.

SASE (arXiv 2411.08333) and the attention zoo it is compared with are built
from the same pieces, defined here once: the reduced dimensions and size
helpers (``dims``); the feature statistics, split by concern: each
statistic's value and closed-form gradient (``stat_formulas``), the
algebra of those gradients (``grad_terms``), their autograd Functions
(``stat_functions``) and plain references (``reference``), the shared
statistics of one map (``feature_stats``) and what a squeeze reads of them
(``reads``), their compiled CPU kernels and the loader of every compiled
source (``compiled``); the squeeze and excitation operations (``squeeze``,
``excitation``); numerics (``numerics``), the float32 policy under mixed
precision (``precision``) and the export flag (``config``); argument
checks (``arg_checks``), the one attention builder (``builder``) and the
bridge into the mm registries (``registration``). Nothing here imports
mmdet or mmpretrain.
"""
from .config import exportable, is_exportable, set_exportable
from .dims import C_DIMS, HW_DIMS, count, resize_to, to_size
from .excitation import (ChannelAffine, Conv1dChain, FCExcitation,
                         SpatialAffine, SpatialConv)
from .feature_stats import FeatureStats
from .numerics import safe_sqrt
from .squeeze import (ChannelCovPool, ChannelL2Norm, CovRowConv, LpPool,
                      MeanPool, PairPool, SpatialCovPool, SpatialL2Norm,
                      adaptive_avg_pool)

__all__ = [
    'C_DIMS', 'ChannelAffine', 'ChannelCovPool', 'ChannelL2Norm',
    'Conv1dChain', 'CovRowConv', 'FCExcitation', 'FeatureStats', 'HW_DIMS',
    'LpPool', 'MeanPool', 'PairPool', 'SpatialAffine', 'SpatialConv',
    'SpatialCovPool', 'SpatialL2Norm', 'adaptive_avg_pool', 'count',
    'exportable', 'is_exportable', 'resize_to', 'safe_sqrt',
    'set_exportable', 'to_size'
]
