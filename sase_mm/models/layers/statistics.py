"""Feature statistics of the squeeze operations, each with its input gradient.

SASE (Searching Architecture for Squeeze and Excitation, arXiv 2411.08333)
squeezes a feature map with seven candidate poolings per edge, and most of
them start from the same statistics of the same input: the mean, the centred
map, the variance, the maximum. During search all seven run on one input, and
the channel and spatial squeezes of the block input ``s0`` reduce the same
tensor, so one :class:`FeatureStats` per input computes each statistic once and
hands it to every operation that asks. An operation called alone builds its
own; the formulas are the same either way, so the numerics do not depend on
whether the statistics were shared.

This module is the one Python home of each statistic (docs/spec.md
section 2): a class per statistic (:class:`Sum`, :class:`Amax`,
:class:`Pow4Sum`, :class:`CentralSums`, and for the gated map
:class:`GatedSumC`, :class:`GatedPow4SumC`) holds its forward ``value`` and
its closed-form ``input_grad``, which returns the gradient as a short list of
terms (:class:`Broadcast`, :class:`Cube`, :class:`AtMax`, :class:`Centred`)
instead of a tensor. Two assemblers read those terms: :func:`assemble` here,
for the statistics' own autograd Functions (a lone broadcast stays a view,
otherwise one tensor is written), and the fused SASE node's
(``sase/fast/fused/input_grad.py``), which adds the terms of every statistic
into one buffer (broadcasts as one low-rank product, one shared x^3). The
compiled kernels (``sase/fast/csrc/sase_fused.cpp``) are the only other
copy; ``tests/models/sase/fast/test_fused.py`` pairs each kernel with the
definition here that it restates.

The squeezed input of edge E3 is the gated map ``s3 = gate * x`` (gate of
shape (B, C, 1, 1)). :meth:`FeatureStats.gated` describes it without
building it: the spatial mean and the L4 sum over C of ``gate * x`` are
batched matrix products against ``x`` (``sum_c g_c x_c`` and
``sum_c g_c^4 x_c^4``), and ``s3`` itself is materialised only when an
operation needs the full map.

Each squeeze operation declares what it reads (``reads()``, a set of
:class:`Read`: a statistic's ``kind`` and its dims, or :data:`MAP` for the
map itself), so which operations the fused block can run is derived from
these declarations.

Under ``create_graph=True`` the Functions differentiate a plain-autograd
reference instead (:func:`reference_backward`), so higher derivatives are
exact too.
"""
import functools
from typing import (Callable, Dict, FrozenSet, List, NamedTuple, Optional,
                    Sequence, Tuple, Union)

import torch

from .dims import C_DIMS, Dims, count


def reference_backward(reference: Callable, inputs: Sequence,
                       grads: Sequence, needs_input_grad: Sequence[bool]):
    """Input gradients of ``reference(*inputs)`` through plain autograd.

    The lean backward passes below are written for first derivatives. When a
    graph of the gradient is requested (``create_graph=True``: grad mode is on
    inside ``backward``), they call this instead: the forward is recomputed
    from the saved inputs with differentiable torch ops and differentiated
    with ``create_graph=True``, so second and higher derivatives are exact.
    """
    with torch.enable_grad():
        # Partial derivatives: each input enters the recomputation through
        # an alias of its own (a view, still differentiable w.r.t. the
        # input), so the gradient does not also flow along the paths by
        # which one input depends on another (e.g. a gate computed from x).
        inputs = [t.view_as(t) if isinstance(t, torch.Tensor)
                  and t.requires_grad else t for t in inputs]
        outs = reference(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs, )
    pairs = [(o, g) for o, g in zip(outs, grads)
             if g is not None and o is not None and o.requires_grad]
    wanted = [i for i, (t, need) in enumerate(zip(inputs, needs_input_grad))
              if need and isinstance(t, torch.Tensor) and t.requires_grad]
    result = [None] * len(inputs)
    if pairs and wanted:
        got = torch.autograd.grad([o for o, _ in pairs],
                                  [inputs[i] for i in wanted],
                                  [g for _, g in pairs], create_graph=True,
                                  allow_unused=True)
        for i, g in zip(wanted, got):
            result[i] = g
    return tuple(result)


# --------------------------------------------------------------------------
# What a squeeze operation reads.
# --------------------------------------------------------------------------
class Read(NamedTuple):
    """One thing a squeeze operation reads from its :class:`FeatureStats`:
    a statistic's ``kind`` over ``dims``, or the map itself (:data:`MAP`)."""
    kind: str  # 'sum', 'amax', 'pow4', 'central' or 'map'
    dims: Optional[Dims] = None


#: The feature map itself (``FeatureStats.x``): nothing a fast path can
#: describe by statistics.
MAP = Read('map')


def reading(dims: Dims, *stats) -> FrozenSet[Read]:
    """The reads of the statistics ``stats`` (classes below) over ``dims``."""
    return frozenset(Read(s.kind, tuple(dims)) for s in stats)


# --------------------------------------------------------------------------
# Gradient terms: what each statistic's input gradient is made of.
# --------------------------------------------------------------------------
class Broadcast(NamedTuple):
    """The product of ``factors``, each broadcasting against x (keepdim
    shapes, e.g. (B, C, 1, 1) and (B, 1, H, W)): a rank-one term."""
    factors: Tuple[torch.Tensor, ...]


class Cube(NamedTuple):
    """``x^3`` times the product of ``factors`` (broadcasting as above)."""
    factors: Tuple[torch.Tensor, ...]


def _max_indicator(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """1.0 where x equals its maximum m (broadcast), else 0.0.

    Written straight into a float tensor: a bool mask and its conversion
    cost several times more on CPU.
    """
    return torch.eq(x, m, out=torch.empty_like(x))


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
        mask = _max_indicator(x, self.m)
        return mask.mul_(self.share(mask))

    def add_to(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out += term``, in place."""
        mask = _max_indicator(x, self.m)
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


# --------------------------------------------------------------------------
# The statistics: forward value and closed-form input gradient, once each.
# --------------------------------------------------------------------------
def _flat(x: torch.Tensor) -> torch.Tensor:
    b, c = x.shape[:2]
    return x.reshape(b, c, -1)


def bmm_sum_c(x: torch.Tensor) -> torch.Tensor:
    """sum over C as a batched product with ones: (B, C, H, W) -> (B, 1, H, W).

    A matrix product reads x once at full bandwidth; ``x.sum(1)`` reduces
    over a strided axis and is several times slower on CPU.
    """
    b, c, h, w = x.shape
    return torch.bmm(x.new_ones(b, 1, c), _flat(x)).view(b, 1, h, w)


class Sum:
    """sum over ``dims``, keepdim. d/dx = g, broadcast.

    (The mean is this sum over n: its gradient is ``input_grad(g / n)``.)
    """
    kind = 'sum'

    @staticmethod
    def value(x: torch.Tensor, dims: Dims) -> torch.Tensor:
        if tuple(dims) == C_DIMS and x.dim() == 4:
            return bmm_sum_c(x)
        return x.sum(dim=dims, keepdim=True)

    @staticmethod
    def input_grad(g: torch.Tensor) -> List[Term]:
        return [Broadcast((g, ))]


class Amax:
    """max over ``dims``, keepdim. d/dx = g / n_ties at the maxima (as
    ``torch.amax``), 0 elsewhere."""
    kind = 'amax'

    @staticmethod
    def value(x: torch.Tensor, dims: Dims) -> torch.Tensor:
        return x.amax(dim=dims, keepdim=True)

    @staticmethod
    def ties(x: torch.Tensor, m: torch.Tensor, dims: Dims) -> torch.Tensor:
        """Number of maxima over ``dims`` (reduced shape, x's dtype)."""
        return _max_indicator(x, m).sum(dim=dims, keepdim=True)

    @staticmethod
    def input_grad(m: torch.Tensor, dims: Dims,
                   ties: Optional[torch.Tensor],
                   g: torch.Tensor) -> List[Term]:
        """``m`` the maximum, ``ties`` its count if known (else None)."""
        return [AtMax(m, g, tuple(dims), ties)]


class Pow4Sum:
    """sum over ``dims`` of x^4, keepdim. d/dx = 4 x^3 g."""
    kind = 'pow4'

    @staticmethod
    def pow4(x: torch.Tensor) -> torch.Tensor:
        """x^4 as two squarings (``pow(x, 4)`` takes the slow generic path)."""
        t = x * x
        return t.mul_(t)

    @staticmethod
    def value(x: torch.Tensor, dims: Dims,
              x4: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x4``: x^4 if already computed (shared by several statistics)."""
        return Sum.value(Pow4Sum.pow4(x) if x4 is None else x4, dims)

    @staticmethod
    def input_grad(g: torch.Tensor) -> List[Term]:
        return [Cube((4 * g, ))]


class CentralSums:
    """(S2, S3) = (sum d^2, sum d^3) over ``dims``, keepdim, d = x - mean.

    With sum d = 0, the mean's own gradient path included::

        dS2/dx = 2 d,    dS3/dx = 3 d^2 - 3 S2 / n
    """
    kind = 'central'

    @staticmethod
    def value(x: torch.Tensor, mean: torch.Tensor,
              dims: Dims) -> Tuple[torch.Tensor, torch.Tensor]:
        """``mean``: the mean of x over ``dims`` (keepdim)."""
        d = x - mean
        t = d * d
        s2 = Sum.value(t, dims)
        return s2, Sum.value(t.mul_(d), dims)

    @staticmethod
    def input_grad(mean: torch.Tensor, s2: torch.Tensor, n: int,
                   g2: Optional[torch.Tensor],
                   g3: Optional[torch.Tensor]) -> List[Term]:
        """``n`` elements per statistic; either gradient may be None."""
        if g2 is None and g3 is None:
            return []
        if g3 is None:
            return [Centred(mean, g2, None)]
        return [Centred(mean, g2, g3), Broadcast((-3 * g3 * s2 / n, ))]


class GatedSumC:
    """sum over C of ``gate * x``: (B, C, H, W), gate (B, C, 1, 1) ->
    (B, 1, H, W), without forming the product. d/dx = gate_c g_hw;
    d/dgate = sum_hw x g."""
    kind = Sum.kind  # the sum statistic, of the gated map

    @staticmethod
    def value(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return torch.bmm(gate.reshape(b, 1, c), _flat(x)).view(b, 1, h, w)

    @staticmethod
    def input_grad(gate: torch.Tensor, g: torch.Tensor) -> List[Term]:
        return [Broadcast((gate, g))]

    @staticmethod
    def gate_grad(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """sum over H, W of x * g: (B, C, 1, 1) for g (B, 1, H, W)."""
        b, c = x.shape[:2]
        return torch.bmm(g.reshape(b, 1, -1), _flat(x).transpose(1, 2)).view(
            b, c, 1, 1)


class GatedPow4SumC:
    """sum over C of ``w * x^4`` for weights w (B, C, 1, 1): with
    w = gate^4 it is sum_c (gate_c x_c)^4, the L4 sum of the gated map
    (a :class:`GatedSumC` of x^4). d/dx = 4 w_c x^3 g_hw;
    d/dw = sum_hw x^4 g."""
    kind = Pow4Sum.kind  # the fourth-power sum, of the gated map

    @staticmethod
    def weights(gate: torch.Tensor) -> torch.Tensor:
        """w = gate^4, the weights of the gated map's L4 sum."""
        return gate.square().square()

    @staticmethod
    def value(x: torch.Tensor, w: torch.Tensor,
              x4: Optional[torch.Tensor] = None) -> torch.Tensor:
        return GatedSumC.value(Pow4Sum.pow4(x) if x4 is None else x4, w)

    @staticmethod
    def input_grad(w: torch.Tensor, g: torch.Tensor) -> List[Term]:
        return [Cube((4 * w, g))]

    @staticmethod
    def weight_grad(x4: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """sum over H, W of x^4 * g: (B, C, 1, 1); x4 = x^4."""
        return GatedSumC.gate_grad(x4, g)


# --------------------------------------------------------------------------
# Their autograd Functions (first derivatives from the terms above).
# --------------------------------------------------------------------------
class _Sum(torch.autograd.Function):
    """:class:`Sum`; its backward is a broadcast view of the gradient."""

    @staticmethod
    def forward(ctx, x, dims):
        ctx.shape = x.shape
        return Sum.value(x, dims)

    @staticmethod
    def backward(ctx, grad):
        # Linear: the expand is exact for higher derivatives too.
        return assemble(Sum.input_grad(grad), ctx.shape), None


def sum_keepdim(x: torch.Tensor, dims: Dims) -> torch.Tensor:
    """``x.sum(dims, keepdim=True)`` (over C of a (B, C, H, W) map as a
    matrix product), differentiable."""
    return _Sum.apply(x, tuple(dims))


class _MeanAmax(torch.autograd.Function):
    """(mean, amax) over ``dims``, keepdim, from one node.

    The backward pass writes one tensor for both: the max's gradient
    (:class:`Amax`), plus the mean's broadcast one (:class:`Sum` over n).
    Either output may be unused (its gradient None).
    """

    @staticmethod
    def forward(ctx, x, dims, with_mean):
        m = Amax.value(x, dims)
        ctx.dims, ctx.n, ctx.shape = dims, count(x.shape, dims), x.shape
        ctx.with_mean = with_mean
        ctx.save_for_backward(x, m)
        ctx.set_materialize_grads(False)
        mean = Sum.value(x, dims) / ctx.n if with_mean else None
        return mean, m

    @staticmethod
    def reference(x, dims, with_mean):
        mean = x.mean(dim=dims, keepdim=True) if with_mean else None
        return mean, x.amax(dim=dims, keepdim=True)

    @staticmethod
    def backward(ctx, grad_mean, grad_max):
        x, m = ctx.saved_tensors
        if torch.is_grad_enabled():
            return reference_backward(_MeanAmax.reference,
                                      (x, ctx.dims, ctx.with_mean),
                                      (grad_mean, grad_max),
                                      ctx.needs_input_grad)
        terms = []
        if grad_max is not None:
            terms += Amax.input_grad(m, ctx.dims, None, grad_max)
        if grad_mean is not None:
            terms += Sum.input_grad(grad_mean / ctx.n)
        return assemble(terms, ctx.shape, x), None, None


class _CentralSums(torch.autograd.Function):
    """:class:`CentralSums` as one node, instead of autograd through the
    centred map, its square and its cube. ``mean`` is the (detached) mean
    over ``dims``; its own gradient path is part of the closed form."""

    @staticmethod
    def forward(ctx, x, mean, dims):
        s2, s3 = CentralSums.value(x, mean, dims)
        ctx.dims, ctx.n = dims, count(x.shape, dims)
        ctx.save_for_backward(x, mean, s2)
        ctx.set_materialize_grads(False)
        return s2, s3

    @staticmethod
    def reference(x, mean, dims):
        # The mean is recomputed from x, so its gradient path is included.
        d = x - x.mean(dim=dims, keepdim=True)
        return (d.square().sum(dim=dims, keepdim=True),
                d.pow(3).sum(dim=dims, keepdim=True))

    @staticmethod
    def backward(ctx, g2, g3):
        x, mean, s2 = ctx.saved_tensors
        if torch.is_grad_enabled():
            return reference_backward(_CentralSums.reference,
                                      (x, mean, ctx.dims), (g2, g3),
                                      ctx.needs_input_grad)
        terms = CentralSums.input_grad(mean, s2, ctx.n, g2, g3)
        return assemble(terms, x.shape, x), None, None


class _Pow4Sum(torch.autograd.Function):
    """:class:`Pow4Sum`; saves x, not x^4."""

    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        ctx.save_for_backward(x)
        return Pow4Sum.value(x, dims)

    @staticmethod
    def reference(x, dims):
        return x.pow(4).sum(dim=dims, keepdim=True)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        if torch.is_grad_enabled():
            return reference_backward(_Pow4Sum.reference, (x, ctx.dims),
                                      (grad, ), ctx.needs_input_grad)
        return assemble(Pow4Sum.input_grad(grad), x.shape, x), None


class _GatedSumC(torch.autograd.Function):
    """:class:`GatedSumC` of x (B, C, H, W) and gate (B, C, 1, 1)."""

    @staticmethod
    def forward(ctx, x, gate):
        ctx.save_for_backward(x, gate)
        return GatedSumC.value(x, gate)

    # The value is one differentiable product: it is its own reference (no
    # g * x map under create_graph either).
    reference = staticmethod(GatedSumC.value)

    @staticmethod
    def backward(ctx, grad):
        x, gate = ctx.saved_tensors
        if torch.is_grad_enabled():
            return reference_backward(_GatedSumC.reference, (x, gate),
                                      (grad, ), ctx.needs_input_grad)
        grad_x = grad_gate = None
        if ctx.needs_input_grad[1]:
            grad_gate = GatedSumC.gate_grad(x, grad)
        if ctx.needs_input_grad[0]:
            grad_x = assemble(GatedSumC.input_grad(gate, grad), x.shape, x)
        return grad_x, grad_gate


class _GatedPow4SumC(torch.autograd.Function):
    """sum over C of (g_c x_c)^4 = sum_c g_c^4 x_c^4 for x (B, C, H, W) and
    a gate g (B, C, 1, 1): :class:`GatedPow4SumC` with w = g^4; returns
    (B, 1, H, W) without forming g * x."""

    @staticmethod
    def forward(ctx, x, gate):
        w = GatedPow4SumC.weights(gate)
        x4 = Pow4Sum.pow4(x)
        ctx.save_for_backward(x, gate, w, x4)
        return GatedPow4SumC.value(x, w, x4)

    @staticmethod
    def reference(x, gate):
        return (gate * x).pow(4).sum(dim=1, keepdim=True)

    @staticmethod
    def backward(ctx, grad):
        x, gate, w, x4 = ctx.saved_tensors
        if torch.is_grad_enabled():
            return reference_backward(_GatedPow4SumC.reference, (x, gate),
                                      (grad, ), ctx.needs_input_grad)
        grad_x = grad_gate = None
        if ctx.needs_input_grad[1]:  # dw/dgate = 4 gate^3
            grad_gate = GatedPow4SumC.weight_grad(x4, grad).mul_(
                4 * gate.pow(3))
        if ctx.needs_input_grad[0]:
            grad_x = assemble(GatedPow4SumC.input_grad(w, grad), x.shape, x)
        return grad_x, grad_gate


# --------------------------------------------------------------------------
# The statistics cache.
# --------------------------------------------------------------------------
class FeatureStats:
    """Lazily computed, cached reductions of one tensor.

    Every statistic keeps the reduced dimensions (``keepdim=True``) so it
    broadcasts against ``x``. What each method reads, in the vocabulary of
    the squeeze operations' ``reads()``: :meth:`sum`, :meth:`mean` the
    ``'sum'``; :meth:`amax` the ``'amax'``; :meth:`mean_amax` both;
    :meth:`pow4_sum` the ``'pow4'``; :meth:`central_sums`, :meth:`var`,
    :meth:`std_unbiased`, :meth:`third_moment` the ``'central'`` and the
    ``'sum'`` (for the mean); :attr:`x` the :data:`MAP`.

    Args:
        x (Tensor): the feature map, (B, C, H, W).
    """

    def __init__(self, x: Optional[torch.Tensor]):
        self._x = x
        self._base: Optional[torch.Tensor] = None
        self._gate: Optional[torch.Tensor] = None
        self._cache: Dict[tuple, torch.Tensor] = {}

    @classmethod
    def gated(cls, x: torch.Tensor, gate: torch.Tensor) -> 'FeatureStats':
        """Statistics of ``gate * x`` (x (B, C, H, W), gate (B, C, 1, 1)),
        materialising the product only when a statistic needs it."""
        stats = cls(None)
        stats._base, stats._gate = x, gate
        return stats

    @property
    def x(self) -> torch.Tensor:
        """The feature map (for a gated map, built on first use)."""
        if self._x is None:
            self._x = self._gate * self._base
        return self._x

    @property
    def shape(self) -> torch.Size:
        return (self._x if self._x is not None else self._base).shape

    def _get(self, key, fn):
        value = self._cache.get(key)
        if value is None:
            value = fn()
            self._cache[key] = value
        return value

    def _gated_over_c(self, dims: Dims) -> bool:
        return (self._gate is not None and tuple(dims) == C_DIMS
                and self._base.dim() == 4 and self._gate.dim() == 4
                and self._gate.shape[2:] == (1, 1))

    def count(self, dims: Dims) -> int:
        """Number of elements reduced over ``dims`` (the runtime size)."""
        return count(self.shape, dims)

    def sum(self, dims: Dims) -> torch.Tensor:
        def compute():
            if self._gated_over_c(dims):
                return _GatedSumC.apply(self._base, self._gate)
            return sum_keepdim(self.x, dims)

        return self._get(('sum', dims), compute)

    def mean(self, dims: Dims) -> torch.Tensor:
        return self._get(('mean', dims),
                         lambda: self.sum(dims) / self.count(dims))

    def amax(self, dims: Dims) -> torch.Tensor:
        return self._get(
            ('amax', dims),
            lambda: _MeanAmax.apply(self.x, tuple(dims), False)[1])

    def mean_amax(self, dims: Dims) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(mean(dims), amax(dims))``; computed by one autograd node
        (one gradient tensor for both) unless either is already cached."""
        key_mean, key_max = ('mean', dims), ('amax', dims)
        if key_mean not in self._cache and key_max not in self._cache:
            mean, m = _MeanAmax.apply(self.x, tuple(dims), True)
            self._cache[key_mean], self._cache[key_max] = mean, m
        return self.mean(dims), self.amax(dims)

    def pow4_sum(self, dims: Dims) -> torch.Tensor:
        """sum over ``dims`` of x^4."""
        def compute():
            if self._gated_over_c(dims):
                return _GatedPow4SumC.apply(self._base, self._gate)
            return _Pow4Sum.apply(self.x, tuple(dims))

        return self._get(('pow4', dims), compute)

    def central_sums(self, dims: Dims) -> Tuple[torch.Tensor, torch.Tensor]:
        """(sum over ``dims`` of (x - mean)^2, of (x - mean)^3), keepdim."""
        def compute():
            return _CentralSums.apply(self.x, self.mean(dims).detach(),
                                      tuple(dims))

        return self._get(('central_sums', dims), compute)

    def var(self, dims: Dims) -> torch.Tensor:
        """Biased variance (divides by n), as the normalisation layers use."""
        return self._get(
            ('var', dims),
            lambda: self.central_sums(dims)[0] / self.count(dims))

    def std_unbiased(self, dims: Dims) -> torch.Tensor:
        """Unbiased standard deviation (divides by n - 1).

        With a single element (n = 1) the unbiased estimate is undefined; the
        divisor is clamped to 1 so the result is 0 instead of NaN.
        """
        def compute():
            n = self.count(dims)
            return safe_sqrt(self.central_sums(dims)[0] / max(n - 1, 1))

        return self._get(('std', dims), compute)

    def third_moment(self, dims: Dims) -> torch.Tensor:
        """Third central moment, mean((x - mean)^3); not divided by std^3."""
        return self._get(
            ('m3', dims),
            lambda: self.central_sums(dims)[1] / self.count(dims))


#: Dtypes whose statistics are taken in float32 (mixed precision).
HALF_DTYPES = (torch.float16, torch.bfloat16)


def in_float32(fn: Callable[[torch.Tensor], torch.Tensor],
               x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` with every statistic accumulated in float32.

    Under autocast, or for a float16 / bfloat16 x, ``fn`` runs on x cast to
    float32 with autocast off for x's device, and its result comes back in
    x's dtype. Why: a float16 fourth power overflows above 65504^(1/4) (about
    16), sums of B*H*W half-precision values lose most of their digits, and
    the moments of std and skew pooling cancel. The SASE blocks are
    memory-bound and small beside the convolutions around them, so the
    cast costs one read and one write of x. Otherwise (float32 / float64, no
    autocast) it is ``fn(x)``, unchanged.
    """
    device = x.device.type
    if x.dtype not in HALF_DTYPES and not torch.is_autocast_enabled(device):
        return fn(x)
    with torch.autocast(device, enabled=False):
        out = fn(x.float())
    return out.to(x.dtype)


def safe_sqrt(x: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """``x ** (1 / p)`` for x >= 0 with a finite gradient at 0.

    Equal to the plain root wherever x > 1e-12; below that the input is
    clamped, so an all-zero map (e.g. a 1x1 map after normalisation) gives a
    zero gradient instead of inf/NaN.
    """
    x = x.clamp_min(1e-12)
    return x.sqrt() if p == 2.0 else x.pow(1.0 / p)
