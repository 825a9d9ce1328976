"""dL/dx of the fused SASE block from the statistics' closed forms (PyTorch).

SASE (arXiv 2411.08333). The backward pass of the fused node
(``node.py``) has the gradient of every statistic on the tape
(``tape.py``); each statistic turns its gradient into terms
(``layers/grad_terms.py``) with its own ``input_grad``
(``layers/stat_formulas.py``, the one definition of each closed form).
The block input's gradient is the output path's ``residual(grad, a, b)``
(``sase/dag.py``) plus all those terms, written into one buffer:
broadcast terms as one low-rank product, the x^3 terms sharing one x^3,
full-size terms added in place. ``dispatch.py`` does the
same in one pass of the compiled kernels where they apply.
"""
from typing import List, Optional, Sequence, Tuple

import torch

from ....layers.grad_terms import Broadcast, Cube, Term, assemble

RowCol = Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]


def _row_col(factors: Sequence[torch.Tensor],
             x: torch.Tensor) -> Optional[RowCol]:
    """(row (B, C) or None, column (B, H*W) or None) whose outer product is
    that of ``factors`` (each (B, C, 1, 1) or (B, 1, H, W); None a vector of
    ones), or None when a factor is neither."""
    b, c, h, w = x.shape
    row = col = None
    for f in factors:
        if f.dim() != 4 or f.shape[0] != b:
            return None
        if f.shape[1] == c and f.shape[2:] == (1, 1):
            f = f.reshape(b, c)
            row = f if row is None else row * f
        elif f.shape[1] == 1 and f.shape[2:] == (h, w):
            f = f.reshape(b, h * w)
            col = f if col is None else col * f
        else:
            return None
    return row, col


def _input_grad(x: torch.Tensor, t: torch.Tensor,
                terms: List[Term]) -> torch.Tensor:
    """Adds every gradient term to ``t`` (in place) and returns it.

    ``t`` starts as the output path's gradient; ``terms`` are the
    statistics' (``input_grad`` of each). Broadcast terms become one rank-k
    product ``U @ V`` (U (B, C, k), V (B, k, H*W)); the x^3 terms share one
    x^3; full-size terms add themselves.
    """
    b, c, h, w = x.shape
    sums: List[RowCol] = []  # terms row_c col_hw
    cubes: List[RowCol] = []  # terms x^3 row_c col_hw
    for term in terms:
        if isinstance(term, (Broadcast, Cube)):
            rc = _row_col(term.factors, x)
            if rc is None:  # not of the block's shapes: added as it is
                t.add_(assemble([term], x.shape, x))
            else:
                (sums if isinstance(term, Broadcast) else cubes).append(rc)
        else:  # full-size: its temporaries are freed before the next one
            term.add_to(x, t)
    if sums:
        row, col = sums[0]
        if len(sums) == 1 and (row is None or col is None):
            t.add_(row.view(b, c, 1, 1) if col is None else
                   col.view(b, 1, h, w))
        else:
            t.view(b, c, h * w).baddbmm_(*_stacked(sums, x))
    if cubes:
        x3 = x * x
        x3.mul_(x)
        if len(cubes) == 1:
            row, col = cubes[0]
            if row is not None and col is not None:
                x3.mul_(row.view(b, c, 1, 1))
                t.addcmul_(x3, col.view(b, 1, h, w))
            elif row is not None:
                t.addcmul_(x3, row.view(b, c, 1, 1))
            else:
                t.addcmul_(x3, col.view(b, 1, h, w))
        else:
            t.addcmul_(x3, torch.bmm(*_stacked(cubes, x)).view(b, c, h, w))
    return t


def _stacked(pairs: Sequence[RowCol], x: torch.Tensor):
    """(U (B, C, k), V (B, k, H*W)) with U @ V = sum_k row_k col_k^T for
    ``pairs`` of (row (B, C) or None, column (B, H*W) or None); None is a
    vector of ones (a term broadcast along that axis)."""
    b, c, h, w = x.shape
    ones_c, ones_s = x.new_ones(b, c), x.new_ones(b, h * w)
    u = torch.stack([ones_c if r is None else r for r, _ in pairs], 2)
    v = torch.stack([ones_s if s is None else s for _, s in pairs], 1)
    return u, v
