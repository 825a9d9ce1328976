"""Kernel dispatch of the fused SASE block: when and how the C++ kernels run.

SASE (arXiv 2411.08333). On CPU in float32 / float64 the fused node's
full-size steps run as single passes of the compiled kernels
(``../kernels.py``, ``../csrc/sase_fused.cpp``); elsewhere (GPU, other
dtypes, no compiler, ``SASE_MM_NO_EXT=1``) the PyTorch closed forms of
``input_grad.py`` run instead, with the same values.

Each kernel restates a Python definition, and
``tests/models/sase/fast/test_fused.py`` pairs them (``KERNEL_PAIRS``):
``row_stats`` the :class:`Sum`, :class:`Amax` and ties over H, W, and the
:class:`Sum` over C;
``gated_pow4_sum`` and ``pow4_rowdot`` :class:`GatedPow4SumC`'s value and
weight gradient (``layers/stat_formulas.py``); ``grad_dots``, ``scale`` and the
output path of ``combine`` :func:`residual_map_grads` and :func:`residual`
of :func:`residual_factors` (``sase/dag.py``; the kernels take the maps s2,
s5 and form the factors as it does); the rest of ``combine`` the gradient
terms, as ``input_grad.py`` adds them. The excitations' kernels
(``map_conv``, ``chain_gate``, ``mixer_forward`` and their backward passes)
are called from ``../map_conv.py`` and ``spatial.py``.
"""
from typing import Dict, List, Optional

import torch

from ....layers.dims import HW_DIMS
from ....layers.grad_terms import AtMax, Broadcast, Cube, Term
from ..kernels import fused_kernels
from .input_grad import _row_col

#: The optional inputs of the ``combine`` kernel, in its argument order.
COMBINE_SLOTS = ('r', 's', 'u', 'v', 'mx', 'share', 'k', 'q')


def kernels_for(x: torch.Tensor):
    """The compiled kernels if they apply to x, else None."""
    return fused_kernels() if _kernel_ready(x) else None


def _kernel_ready(x: torch.Tensor) -> bool:
    """Whether the compiled kernels apply to x (CPU, float or double)."""
    return (x.device.type == 'cpu'
            and x.dtype in (torch.float32, torch.float64))


def _rows(*maps: torch.Tensor):
    """(B, ...) maps as contiguous (B, n) rows, the kernels' layout."""
    return tuple(t.reshape(t.shape[0], -1).contiguous() for t in maps)


def _combine_slots(terms: List[Term],
                   x: torch.Tensor) -> Optional[Dict[str, torch.Tensor]]:
    """The ``combine`` kernel's inputs for ``terms`` (its slots r_c + s_n +
    u_c v_n + [x == mx_c] share_c + k_c x^3 q_n), or None when a term has
    no slot there (central moments, fourth powers over one axis only,
    maxima over C, a second term of a kind that has one slot)."""
    b, c = x.shape[:2]
    slots: Dict[str, torch.Tensor] = {}

    def put(key, value):
        if key in slots:
            if key in ('r', 's'):  # broadcast sums add up
                slots[key] = slots[key] + value
                return True
            return False
        slots[key] = value
        return True

    for term in terms:
        rc = (_row_col(term.factors, x)
              if isinstance(term, (Broadcast, Cube)) else None)
        if isinstance(term, Broadcast) and rc is not None:
            row, col = rc
            ok = (put('r', row) if col is None else
                  put('s', col) if row is None else
                  put('u', row) and put('v', col))
        elif (isinstance(term, Cube) and rc is not None
              and rc[0] is not None and rc[1] is not None):
            ok = put('k', rc[0]) and put('q', rc[1])
        elif (isinstance(term, AtMax) and term.dims == HW_DIMS
              and term.ties is not None):
            ok = put('mx', term.m.reshape(b, c)) and put(
                'share', term.share().reshape(b, c))
        else:
            ok = False
        if not ok:
            return None
    return slots


def _kernel_input_grad(kernels, grad, x, s2, s5,
                       terms: List[Term]) -> Optional[torch.Tensor]:
    """dL/dx in one pass of the compiled ``combine`` kernel (``grad`` the
    output gradient, s2 (B, C, 1, 1) and s5 (B, 1, H, W) the block's maps,
    whose residual factors it computes), or None when a term has no slot
    there: the PyTorch closed forms then take over."""
    slots = _combine_slots(terms, x)
    if slots is None:
        return None
    return kernels.combine(grad, x, *_rows(s2, s5), *[
        None if slots.get(k) is None else slots[k].contiguous()
        for k in COMBINE_SLOTS])
