"""Deprecated: the operations moved to :mod:`sase_mm.models.layers`
(``squeeze``, ``excitation``, ``dims``). SASE, arXiv 2411.08333."""
from ..layers.dims import (C_DIMS, DEFAULT_SPATIAL_SIZE, HW_DIMS,  # noqa: F401
                           SizeLike, resize_to, to_size)
from ..layers.excitation import *  # noqa: F401,F403
from ..layers.excitation import (ChannelAffine, Conv1dChain,  # noqa: F401
                                 FCExcitation, SpatialAffine, SpatialConv)
from ..layers.squeeze import *  # noqa: F401,F403
from ..layers.squeeze import (ChannelCovPool, ChannelL2Norm,  # noqa: F401
                              CovRowConv, LpPool, MeanPool, PairPool,
                              SpatialCovPool, SpatialL2Norm,
                              adaptive_avg_pool)

HW, C = HW_DIMS, C_DIMS  # the old names of the reduced dimensions
