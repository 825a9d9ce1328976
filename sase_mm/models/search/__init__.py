"""The DARTS search model of SASE (arXiv 2411.08333)."""
from .darts_search import DARTSSearch, virtual_sgd_step
from .grad_sync import all_reduce_grads_, all_reduce_mean, world_size

__all__ = ['DARTSSearch', 'all_reduce_grads_', 'all_reduce_mean',
           'virtual_sgd_step', 'world_size']
