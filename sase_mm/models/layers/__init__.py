"""The shared bottom of sase_mm's models: plain PyTorch attention layers.

SASE (arXiv 2411.08333) and the attention zoo it is compared with are built
from the same pieces, defined here once: the reduced dimensions and size
helpers (``dims``), the feature statistics with their closed-form gradients
(``statistics``), the squeeze and excitation operations (``squeeze``,
``excitation``), argument checks (``arg_checks``), the one attention builder
with its ``is_searchable`` predicate (``builder``) and the bridge into the
mm registries (``registration``). Nothing here imports mmdet or mmpretrain.
"""
from .dims import C_DIMS, HW_DIMS, count, resize_to, to_size
from .excitation import (ChannelAffine, Conv1dChain, FCExcitation,
                         SpatialAffine, SpatialConv)
from .squeeze import (ChannelCovPool, ChannelL2Norm, CovRowConv, LpPool,
                      MeanPool, PairPool, SpatialCovPool, SpatialL2Norm,
                      adaptive_avg_pool)
from .statistics import FeatureStats, safe_sqrt

__all__ = [
    'C_DIMS', 'ChannelAffine', 'ChannelCovPool', 'ChannelL2Norm',
    'Conv1dChain', 'CovRowConv', 'FCExcitation', 'FeatureStats', 'HW_DIMS',
    'LpPool', 'MeanPool', 'PairPool', 'SpatialAffine', 'SpatialConv',
    'SpatialCovPool', 'SpatialL2Norm', 'adaptive_avg_pool', 'count',
    'resize_to', 'safe_sqrt', 'to_size'
]
