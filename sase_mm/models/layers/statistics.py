"""Feature statistics shared by the squeeze operations, with lean gradients.

SASE (Searching Architecture for Squeeze and Excitation, arXiv 2411.08333)
squeezes a feature map with seven candidate poolings per edge, and most of
them start from the same statistics of the same input: the mean, the centred
map, the variance, the maximum. During search all seven run on one input, and
the channel and spatial squeezes of the block input ``s0`` reduce the same
tensor, so one :class:`FeatureStats` per input computes each statistic once and
hands it to every operation that asks. An operation called alone builds its
own; the formulas are the same either way, so the numerics do not depend on
whether the statistics were shared.

The squeezed input of edge E3 is the gated map ``s3 = gate * x`` (gate of
shape (B, C, 1, 1)). :meth:`FeatureStats.gated` describes it without
building it: the spatial mean and the L4 sum over C of ``gate * x`` are
batched matrix products against ``x`` (``sum_c g_c x_c`` and
``sum_c g_c^4 x_c^4``), and ``s3`` itself is materialised only when an
operation needs the full map.

The large reductions run through small autograd functions whose backward
passes return broadcast views or write one tensor, instead of the several
full-size temporaries of the generic formulas (same values, docs/spec.md
section 2). Under ``create_graph=True`` they differentiate a plain-autograd
reference instead (:func:`reference_backward`), so higher derivatives are
exact too.
"""
from typing import Callable, Dict, Optional, Sequence, Tuple

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
# Reductions with lean backward passes.
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


class _SumC(torch.autograd.Function):
    """sum over C, keepdim; backward is a broadcast view of the gradient."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return bmm_sum_c(x)

    @staticmethod
    def backward(ctx, grad):
        # Linear: the expand is exact for higher derivatives too.
        return grad.expand(ctx.shape)


def sum_keepdim(x: torch.Tensor, dims: Dims) -> torch.Tensor:
    """``x.sum(dims, keepdim=True)`` for a (B, C, H, W) map."""
    if tuple(dims) == C_DIMS and x.dim() == 4:
        return _SumC.apply(x)
    return x.sum(dim=dims, keepdim=True)


def _sum(x: torch.Tensor, dims: Dims) -> torch.Tensor:
    """Plain (autograd-free inside a Function) keepdim sum over ``dims``."""
    if tuple(dims) == C_DIMS and x.dim() == 4:
        return bmm_sum_c(x)
    return x.sum(dim=dims, keepdim=True)


def _max_indicator(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """1.0 where x equals its maximum m (broadcast), else 0.0.

    Written straight into a float tensor: a bool mask and its conversion
    cost several times more on CPU.
    """
    return torch.eq(x, m, out=torch.empty_like(x))


class _MeanAmax(torch.autograd.Function):
    """(mean, amax) over ``dims``, keepdim, from one node.

    The backward pass writes one tensor for both: the mean's broadcast
    gradient plus the max's, which ties share equally, as
    ``torch.amax``'s does. Either output may be unused (its gradient None).
    """

    @staticmethod
    def forward(ctx, x, dims, with_mean):
        m = x.amax(dim=dims, keepdim=True)
        ctx.dims, ctx.n, ctx.shape = dims, count(x.shape, dims), x.shape
        ctx.with_mean = with_mean
        ctx.save_for_backward(x, m)
        ctx.set_materialize_grads(False)
        mean = _sum(x, dims) / ctx.n if with_mean else None
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
        base = None if grad_mean is None else grad_mean / ctx.n
        if grad_max is None:
            return (None if base is None else base.expand(ctx.shape)), None, \
                None
        mask = _max_indicator(x, m)
        share = grad_max / mask.sum(dim=ctx.dims, keepdim=True)
        if base is None:
            return mask.mul_(share), None, None
        # base + mask * share: exactly the mean's gradient off the maxima.
        return mask.mul_(share).add_(base), None, None


class _CentralSums(torch.autograd.Function):
    """(sum d^2, sum d^3) over ``dims``, keepdim, for d = x - mean(x).

    One node for the second and third central moments, with the closed-form
    gradient (sum d = 0)::

        d S2 / dx = 2 d,    d S3 / dx = 3 d^2 - 3 S2 / n

    instead of autograd through the centred map, its square and its cube.
    ``mean`` is the (detached) mean over ``dims``; its own gradient path is
    part of the formulas above.
    """

    @staticmethod
    def forward(ctx, x, mean, dims):
        d = x - mean
        t = d * d
        s2 = _sum(t, dims)
        s3 = _sum(t.mul_(d), dims)
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
        if g2 is None and g3 is None:
            return None, None, None
        d = x - mean
        if g3 is None:
            return d.mul_(2 * g2), None, None
        # d * (2 g2 + 3 g3 d) - 3 g3 S2 / n
        t = torch.mul(d, 3 * g3)
        if g2 is not None:
            t.add_(2 * g2)
        return t.mul_(d).sub_(3 * g3 * s2 / ctx.n), None, None


class _Pow4Sum(torch.autograd.Function):
    """sum over ``dims`` of x^4, keepdim (x^4 as two squarings: pow(x, 4)
    takes the slow generic path)."""

    @staticmethod
    def forward(ctx, x, dims):
        t = x * x
        t.mul_(t)
        ctx.dims = dims
        ctx.save_for_backward(x)
        if tuple(dims) == C_DIMS and x.dim() == 4:
            return bmm_sum_c(t)
        return t.sum(dim=dims, keepdim=True)

    @staticmethod
    def reference(x, dims):
        return x.pow(4).sum(dim=dims, keepdim=True)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        if torch.is_grad_enabled():
            return reference_backward(_Pow4Sum.reference, (x, ctx.dims),
                                      (grad, ), ctx.needs_input_grad)
        return x.pow(3).mul_(4 * grad), None


class _GatedPow4SumC(torch.autograd.Function):
    """sum over C of (g_c x_c)^4 = sum_c g_c^4 x_c^4 for x (B, C, H, W) and
    a gate g (B, C, 1, 1); returns (B, 1, H, W) without forming g * x."""

    @staticmethod
    def forward(ctx, x, gate):
        b, c, h, w = x.shape
        g4 = gate.reshape(b, 1, c).square().square()
        x4 = x * x
        x4.mul_(x4)
        ctx.save_for_backward(x, gate, g4, x4)
        return torch.bmm(g4, _flat(x4)).view(b, 1, h, w)

    @staticmethod
    def reference(x, gate):
        return (gate * x).pow(4).sum(dim=1, keepdim=True)

    @staticmethod
    def backward(ctx, grad):
        x, gate, g4, x4 = ctx.saved_tensors
        if torch.is_grad_enabled():
            return reference_backward(_GatedPow4SumC.reference, (x, gate),
                                      (grad, ), ctx.needs_input_grad)
        b, c, h, w = x.shape
        gf = grad.reshape(b, 1, h * w)
        grad_x = grad_gate = None
        if ctx.needs_input_grad[1]:
            # d/dg_c = 4 g_c^3 sum_n x^4 grad_n
            s = torch.bmm(gf, _flat(x4).transpose(1, 2)).view(b, c, 1, 1)
            grad_gate = s.mul_(4 * gate.pow(3))
        if ctx.needs_input_grad[0]:
            # d/dx = 4 g_c^4 x^3 grad_n
            grad_x = x.pow(3).mul_((4 * g4).view(b, c, 1, 1)).mul_(
                grad.view(b, 1, h, w))
        return grad_x, grad_gate


# --------------------------------------------------------------------------
# The statistics cache.
# --------------------------------------------------------------------------
class FeatureStats:
    """Lazily computed, cached reductions of one tensor.

    Every statistic keeps the reduced dimensions (``keepdim=True``) so it
    broadcasts against ``x``.

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
                b, c, h, w = self._base.shape
                return torch.bmm(self._gate.reshape(b, 1, c),
                                 _flat(self._base)).view(b, 1, h, w)
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


def safe_sqrt(x: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """``x ** (1 / p)`` for x >= 0 with a finite gradient at 0.

    Equal to the plain root wherever x > 1e-12; below that the input is
    clamped, so an all-zero map (e.g. a 1x1 map after normalisation) gives a
    zero gradient instead of inf/NaN.
    """
    x = x.clamp_min(1e-12)
    return x.sqrt() if p == 2.0 else x.pow(1.0 / p)
