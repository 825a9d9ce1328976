"""dL/dx of the fused SASE block from the statistics' closed forms (PyTorch).

SASE (arXiv 2411.08333). The backward pass of the fused node
(``node.py``) has the gradient of every statistic on the tape
(``tape.py``); the block input's gradient is the output path's
``grad * (1 + s2 / 2 + s5 / 2)`` plus each statistic's closed-form
contribution (table in the package docstring), written into one buffer:
broadcast terms as one low-rank product, the x^3 terms sharing one x^3.
``dispatch.py`` does the same in one pass of the compiled kernels where
they apply.
"""
from typing import Dict, List, Optional, Tuple

import torch

from ....layers.dims import HW_DIMS
from .tape import _Entry

def _factors(s2: torch.Tensor, s5: torch.Tensor):
    """(a (B, C, 1, 1), b (B, 1, H, W)) with 1 + s2 / 2 + s5 / 2 = a + b."""
    return s2 * 0.5 + 1.0, s5 * 0.5


def _residual(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
              out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x * (a + b) as ``x * a + x * b`` (no full-size factor); x (B, C, H,
    W), a (B, C, 1, 1), b (B, 1, H, W) from :func:`_factors`."""
    return torch.mul(x, a, out=out).addcmul_(x, b)


def _input_grad(x: torch.Tensor, t: torch.Tensor, entries: List[_Entry],
                grads: Dict[int, Tuple]) -> torch.Tensor:
    """Adds every statistic's closed-form gradient to ``t`` (in place).

    ``t`` starts as the output path's ``grad * m``; ``grads[i]`` holds the
    small graph's gradients of ``entries[i].outs`` (None where unused).
    Broadcast terms become one rank-k product ``U @ V`` (U (B, C, k),
    V (B, k, H*W)); the x^3 terms share one x^3.
    """
    b, c, h, w = x.shape
    # (row (B, C) or None, column (B, HW) or None) pairs, None a broadcast:
    sums = []  # terms row_c col_hw
    cubes = []  # terms x^3 row_c col_hw

    def term(dims, g):  # g broadcast along dims -> (row, column)
        if tuple(dims) == HW_DIMS:
            return g.reshape(b, c), None
        return None, g.reshape(b, h * w)

    for e, gs in ((entries[i], grads[i]) for i in sorted(grads)):
        g = gs[0]
        if e.kind == 'sum':
            sums.append(term(e.dims, g))
        elif e.kind == 'gsum':
            sums.append((e.aux[0].reshape(b, c), g.reshape(b, h * w)))
        elif e.kind == 'amax':
            # As torch.amax's gradient: ties share it equally.
            mask = torch.eq(x, e.outs[0], out=torch.empty_like(x))
            t.addcmul_(mask, g / mask.sum(dim=e.dims, keepdim=True))
            del mask  # free it before the next full-size temporary
        elif e.kind == 'pow4':
            cubes.append(term(e.dims, 4 * g))
        elif e.kind == 'gpow4':
            g4 = e.aux[0].reshape(b, c).square().square()
            cubes.append((4 * g4, g.reshape(b, h * w)))
        elif e.kind == 'central':
            g2, g3 = gs
            mean, s2 = e.aux
            n = x.numel() // mean.numel()  # elements per statistic
            d = x - mean
            if g3 is None:
                t.add_(d.mul_(2 * g2))
                continue
            q = torch.mul(d, 3 * g3)
            if g2 is not None:
                q.add_(2 * g2)
            t.addcmul_(q, d)
            del q, d
            sums.append(term(e.dims, -3 * g3 * s2 / n))
        else:  # pragma: no cover - every kind the tape records is above
            raise AssertionError(e.kind)
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


def _stacked(pairs, x: torch.Tensor):
    """(U (B, C, k), V (B, k, H*W)) with U @ V = sum_k row_k col_k^T for
    ``pairs`` of (row (B, C) or None, column (B, H*W) or None); None is a
    vector of ones (a term broadcast along that axis)."""
    b, c, h, w = x.shape
    ones_c, ones_s = x.new_ones(b, c), x.new_ones(b, h * w)
    u = torch.stack([ones_c if r is None else r for r, _ in pairs], 2)
    v = torch.stack([ones_s if s is None else s for _, s in pairs], 1)
    return u, v
