"""The algebra of the statistics' input gradients: terms and their sum.

SASE (arXiv 2411.08333). Each statistic of the squeezes
(``stat_formulas.py``) returns its closed-form input gradient not as a
tensor but as a short list of terms: :class:`Broadcast` (a product of
factors that broadcast against x), :class:`Cube` (x^3 times such factors),
:class:`AtMax` (the maximum's gradient, shared by its ties) and
:class:`Centred` (the full-size part of the central sums' gradient). Two
assemblers read them: :func:`assemble` here, for the statistics' own
autograd Functions (a lone broadcast stays a view, otherwise one tensor is
written), and the fused SASE node's (``sase/fast/fused/input_grad.py``),
which adds the terms of every statistic into one buffer (broadcasts as one
low-rank product, one shared x^3).
"""
import functools
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch

from .dims import Dims


def max_indicator(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """1.0 where x equals its maximum m (broadcast), else 0.0, x's shape.

    Written straight into a float tensor: a bool mask and its conversion
    cost several times more on CPU.
    """
    return torch.eq(x, m, out=torch.empty_like(x))


class Broadcast(NamedTuple):
    """The product of ``factors``, each broadcasting against x (keepdim
    shapes, e.g. (B, C, 1, 1) and (B, 1, H, W)): a rank-one term."""
    factors: Tuple[torch.Tensor, ...]


class Cube(NamedTuple):
    """``x^3`` times the product of ``factors`` (broadcasting as above)."""
    factors: Tuple[torch.Tensor, ...]


class AtMax(NamedTuple):
    """``[x == m] * g / ties``: the max's gradient, shared by its ties as
    ``torch.amax``'s is. ``ties`` (the number of maxima, reduced shape) may
    be None: it is then counted from the indicator."""
    m: torch.Tensor
    g: torch.Tensor
    dims: Dims
    ties: Optional[torch.Tensor] = None

    def share(self, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Each maximum's part of the gradient, g / ties (reduced shape);
        ``mask`` the indicator, when ``ties`` is None."""
        n = self.ties if self.ties is not None else mask.sum(
            dim=self.dims, keepdim=True)
        return self.g / n

    def new(self, x: torch.Tensor) -> torch.Tensor:
        """The term as a new tensor of x's shape."""
        mask = max_indicator(x, self.m)
        return mask.mul_(self.share(mask))

    def add_to(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out += term``, in place."""
        mask = max_indicator(x, self.m)
        return out.addcmul_(mask, self.share(mask))


class Centred(NamedTuple):
    """``d * (2 g2 + 3 g3 d)`` with d = x - mean (g2 or g3 may be None): the
    full-size part of the central sums' gradient."""
    mean: torch.Tensor
    g2: Optional[torch.Tensor]
    g3: Optional[torch.Tensor]

    def _factor(self, d: torch.Tensor) -> torch.Tensor:
        """2 g2 + 3 g3 d, a new tensor (g3 given)."""
        t = torch.mul(d, 3 * self.g3)
        return t if self.g2 is None else t.add_(2 * self.g2)

    def new(self, x: torch.Tensor) -> torch.Tensor:
        """The term as a new tensor of x's shape."""
        d = x - self.mean
        if self.g3 is None:
            return d.mul_(2 * self.g2)
        return self._factor(d).mul_(d)

    def add_to(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out += term``, in place."""
        d = x - self.mean
        if self.g3 is None:
            return out.add_(d.mul_(2 * self.g2))
        return out.addcmul_(self._factor(d), d)


Term = Union[Broadcast, Cube, AtMax, Centred]


def product(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The (broadcast) product of ``factors``."""
    return functools.reduce(torch.mul, factors)


def assemble(terms: Sequence[Term], shape: torch.Size,
             x: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
    """The sum of ``terms`` as one input gradient of ``shape`` (None if no
    terms); x is needed by every term but :class:`Broadcast`.

    The statistics' Functions use this: broadcast terms alone stay a
    broadcast view (nothing full-size is written); otherwise the first
    full-size term is built in place and the others are added into it.
    """
    out = None
    for t in terms:  # full-size terms first: they own the buffer
        if isinstance(t, (AtMax, Centred)):
            out = t.new(x) if out is None else t.add_to(x, out)
    for t in terms:
        if isinstance(t, Cube):
            c = x.pow(3)
            for f in t.factors:
                c.mul_(f)
            out = c if out is None else out.add_(c)
    small = [product(t.factors) for t in terms if isinstance(t, Broadcast)]
    if out is None:
        if not small:
            return None
        return functools.reduce(torch.add, small).expand(shape)
    for v in small:
        out.add_(v)
    return out
