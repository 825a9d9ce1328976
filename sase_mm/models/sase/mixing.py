"""Handing the mixing weights to searchable blocks deep inside a model.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333), searched with DARTS (Liu et al., ICLR 2019). A DARTS
pass evaluates the supernet at given mixing weights ``mix`` (softmax(alpha)
with its graph, or detached for the weight step; docs/spec.md section 3).
A network of our own passes them down explicitly (``CifarResNet.forward(x,
mix)``, DARTS's ``cell(s0, s1, weights)``), but an mmpretrain classifier or
an mmdet detector calls its backbone, and the backbone its blocks, with the
features alone. This module owns the one other way in: for the duration of
a pass, :func:`mixing` binds ``mix`` to an alpha, and every searchable
block that reads that alpha and is called without ``mix`` takes the bound
weights (:func:`bound_mix`) instead of computing ``softmax(alpha)`` itself.

The binding is keyed by the alpha tensor (so two searches in one process do
not see each other's weights), nests, and lives in a ``ContextVar`` (one
per thread; a pass runs in the thread that opened it). It covers the
forward only: a block recomputed in the backward pass (activation
checkpointing) runs outside it, so ``DARTSSearch`` refuses ``with_cp``.
"""
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Optional, Tuple

import torch

# (alpha, mix) pairs, innermost binding last.
_BOUND: ContextVar[Tuple[Tuple[torch.Tensor, torch.Tensor], ...]] = \
    ContextVar('sase_mm_bound_mix', default=())


@contextmanager
def mixing(alphas: torch.Tensor, mix: torch.Tensor) -> Iterator[None]:
    """Binds ``mix`` (6, 7) to ``alphas`` for the blocks called inside.

    Args:
        alphas: the (6, 7) alpha the blocks read (``arch_alphas``).
        mix: the mixing weights to use instead of ``softmax(alphas)``,
            (6, 7), any graph.
    """
    if tuple(mix.shape) != tuple(alphas.shape):
        raise ValueError(f'mix must have the shape of alpha '
                         f'{tuple(alphas.shape)}, got {tuple(mix.shape)}')
    token = _BOUND.set(_BOUND.get() + ((alphas, mix), ))
    try:
        yield
    finally:
        _BOUND.reset(token)


def bound_mix(alphas: torch.Tensor) -> Optional[torch.Tensor]:
    """The mixing weights bound to ``alphas`` by the innermost
    :func:`mixing`, or None outside any."""
    for bound, mix in reversed(_BOUND.get()):
        if bound is alphas:
            return mix
    return None
