"""The mixing weights: the one softmax of alpha, and the one way a block
gets them.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333), searched with DARTS (Liu et al., ICLR 2019). Every
edge of a searchable block is ``sum_o mix_o * op_o(x)`` with
``mix = softmax(alpha)`` (docs/spec.md section 3); :func:`softmax_mix` is
that softmax, written once.

A DARTS pass evaluates the supernet at given mixing weights: softmax(alpha)
with its graph for the alpha step, detached for the weight step. The search
model does not hand them down through the network's ``forward`` (an
mmpretrain classifier or an mmdet detector calls its backbone, and the
backbone its blocks, with the features alone): for the duration of a pass,
:func:`mixing` binds ``mix`` to the alpha, and every searchable block asks
:func:`current_mix` for the weights of the alpha it reads. Outside any
binding (a block or network used on its own) that is ``softmax_mix`` of the
alpha.

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

from ..layers.precision import HALF_DTYPES

# (alpha, mix) pairs, innermost binding last.
_BOUND: ContextVar[Tuple[Tuple[torch.Tensor, torch.Tensor], ...]] = \
    ContextVar('sase_mm_bound_mix', default=())


def softmax_mix(alphas: torch.Tensor) -> torch.Tensor:
    """The mixing weights of ``alphas``: the softmax of each edge's row
    over its operations, (6, 7), differentiable in ``alphas``."""
    return alphas.softmax(dim=-1)


@contextmanager
def mixing(alphas: torch.Tensor, mix: torch.Tensor) -> Iterator[None]:
    """Binds ``mix`` (6, 7) to ``alphas`` for the blocks called inside.

    Args:
        alphas: the (6, 7) alpha the blocks read (``arch_alphas``).
        mix: the mixing weights to use instead of ``softmax_mix(alphas)``,
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


def current_mix(alphas: torch.Tensor) -> torch.Tensor:
    """The mixing weights a block reading ``alphas`` uses now: those bound
    by the pass (:func:`mixing`), else ``softmax_mix(alphas)``, of the
    float32 cast of a half-precision alpha (a ``.half()`` network; the
    block runs in float32, ``layers/precision.py``)."""
    mix = bound_mix(alphas)
    if mix is not None:
        return mix
    return softmax_mix(
        alphas.float() if alphas.dtype in HALF_DTYPES else alphas)
