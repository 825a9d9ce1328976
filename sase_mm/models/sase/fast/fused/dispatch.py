"""Kernel dispatch of the fused SASE block: when and how the C++ kernels run.

SASE (arXiv 2411.08333). On CPU in float32 / float64 the fused node's
full-size steps run as single passes of the compiled kernels
(``../kernels.py``, ``../csrc/sase_fused.cpp``); elsewhere (GPU, other
dtypes, no compiler, ``SASE_MM_NO_EXT=1``) the PyTorch closed forms of
``input_grad.py`` run instead, with the same values.
"""
from typing import Dict, List, Optional, Tuple

import torch

from ....layers.dims import HW_DIMS
from ..kernels import fused_kernels
from .input_grad import _factors
from .tape import _Entry


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


def _kernel_input_grad(kernels, grad, x, s2, s5, entries: List[_Entry],
                       grads: Dict[int, Tuple]) -> Optional[torch.Tensor]:
    """dL/dx in one pass of the compiled ``combine`` kernel, or None when a
    statistic has no slot there (fourth powers or central moments of x,
    maxima over C): the PyTorch closed forms then take over."""
    b, c = x.shape[:2]
    terms = {}

    def put(key, value):
        if key in terms:
            if key in ('r', 's'):  # broadcast sums add up
                terms[key] = terms[key] + value
                return True
            return False
        terms[key] = value
        return True

    for i, gs in grads.items():
        e, g = entries[i], gs[0]
        if e.kind == 'sum':
            ok = put('r', g.reshape(b, c)) if e.dims == HW_DIMS else put(
                's', g.reshape(b, -1))
        elif e.kind == 'gsum':
            ok = put('u', e.aux[0].reshape(b, c)) and put(
                'v', g.reshape(b, -1))
        elif e.kind == 'amax' and e.dims == HW_DIMS and e.aux:
            ok = put('mx', e.outs[0].detach().reshape(b, c)) and put(
                'share', (g / e.aux[0]).reshape(b, c))
        elif e.kind == 'gpow4':
            ok = put('k', 4 * e.aux[0].reshape(b, c).square().square()) \
                and put('q', g.reshape(b, -1))
        else:
            ok = False
        if not ok:
            return None
    a, bn = _rows(*_factors(s2, s5))
    args = [terms.get(k) for k in ('r', 's', 'u', 'v', 'mx', 'share', 'k',
                                   'q')]
    return kernels.combine(grad, x, a, bn, *[
        None if t is None else t.contiguous() for t in args])
