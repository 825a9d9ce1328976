"""One alpha tensor for every searchable SASE block of a network.

SASE (arXiv 2411.08333) searches one block design for the whole network, so
all ``SASESearch`` blocks read their mixing weights from a single (6, 7)
alpha tensor (SASE-SPEC section 3). It has exactly one owner in the
state_dict:

* explicit (our search models and backbones): the owner creates the
  parameter with :func:`init_alphas` and passes it to each block, which keeps
  a reference that is not registered;
* implicit (a block built as an mmdet/mmpretrain plugin, where mmcv hands a
  plugin nothing but ``in_channels``): the first block built while a model
  is under construction creates and registers the alpha, and every later
  block of the same model reuses it. "The same model" is the outermost
  ``nn.Module`` whose ``__init__`` is on the call stack, so two models built
  one after the other get separate alphas.
"""
import inspect
import weakref

import torch
import torch.nn as nn

from .op_sets import NUM_EDGES, NUM_OPS

ALPHA_INIT_STD = 1e-3

# Outermost module under construction -> the alpha its blocks share.
_SHARED: 'weakref.WeakKeyDictionary[nn.Module, nn.Parameter]' = \
    weakref.WeakKeyDictionary()


def init_alphas(std: float = ALPHA_INIT_STD) -> nn.Parameter:
    """A new (6, 7) alpha, ``std * N(0, 1)`` (1e-3 in the paper)."""
    return nn.Parameter(std * torch.randn(NUM_EDGES, NUM_OPS))


def _outermost_module_under_construction(skip: nn.Module):
    frame = inspect.currentframe()
    outermost = None
    try:
        while frame is not None:
            if frame.f_code.co_name == '__init__':
                obj = frame.f_locals.get('self')
                if isinstance(obj, nn.Module) and obj is not skip:
                    outermost = obj
            frame = frame.f_back
    finally:
        del frame
    return outermost


def shared_alphas_for(block: nn.Module):
    """Returns ``(alpha, is_owner)`` for a block built without an explicit alpha."""
    model = _outermost_module_under_construction(block)
    if model is None:
        return init_alphas(), True
    alpha = _SHARED.get(model)
    if alpha is None:
        alpha = _SHARED[model] = init_alphas()
        return alpha, True
    return alpha, False
