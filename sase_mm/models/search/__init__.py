"""The DARTS search of SASE (arXiv 2411.08333; DARTS: Liu et al., ICLR 2019).

``darts_search`` the search model (what is optimised, and the order of one
iteration: ``train_step``); ``architect`` the alpha gradient (first and
second order, the virtual SGD step, the Hessian-vector product), pure
functions of the model; ``contract`` what a search model is
(``is_search_model``), the two optimizers' keys and their one check;
``grad_sync`` the averaging across processes.
"""
from .architect import (alpha_gradient, first_order_gradient,
                        hessian_vector_product, scratch_buffers,
                        second_order_gradient, virtual_sgd_step)
from .contract import (ALPHA_OPTIMIZER, OPTIMIZER_KEYS, WEIGHT_OPTIMIZER,
                       check_search_optimizers, is_search_model)
from .darts_search import DARTSSearch
from .grad_sync import all_reduce_grads_, all_reduce_mean, world_size

__all__ = ['ALPHA_OPTIMIZER', 'DARTSSearch', 'OPTIMIZER_KEYS',
           'WEIGHT_OPTIMIZER', 'all_reduce_grads_', 'all_reduce_mean',
           'alpha_gradient', 'check_search_optimizers',
           'first_order_gradient', 'hessian_vector_product',
           'is_search_model',
           'scratch_buffers', 'second_order_gradient', 'virtual_sgd_step',
           'world_size']
