"""The statistics as autograd Functions, with closed-form first derivatives.

SASE (arXiv 2411.08333). Under plain autograd every statistic of a squeeze
would save and write several full-size temporaries (the centred map, its
square and cube, x^4, a bool mask per maximum). Each Function here is one
node per statistic: its forward is the statistic's ``value`` and its
backward assembles the statistic's ``input_grad`` terms
(``stat_formulas.py``, ``grad_terms.assemble``), saving x and small
tensors only.

Each Function also has a plain ``reference`` (``reference.py``): its
backward differentiates the reference under ``create_graph=True``, so
higher derivatives are exact, and the functional forms below run the
reference instead of the Function while the layers are exportable
(``config.py``). ``tests/models/layers/test_stat_functions.py`` checks the
two against each other.

:func:`moments` is all of them at once: one node that computes the sum,
the maximum, the central sums and the fourth-power sum of x over some dims
(those asked for) and writes one input gradient for all of them. On CPU it
runs the compiled ``moments`` kernels (``compiled.py``,
``csrc/sase_stats.cpp``: one pass over x forward, one backward), elsewhere
the formulas of ``stat_formulas.py`` with PyTorch operators, their
gradient terms assembled into one tensor.
"""
from typing import FrozenSet, NamedTuple, Optional, Tuple

import torch

from .compiled import stats_kernels_for
from .dims import C_DIMS, HW_DIMS, Dims, count
from .grad_terms import assemble
from .reference import apply, reference_backward
from .stat_formulas import (Amax, CentralSums, GatedPow4SumC, GatedSumC,
                            Pow4Sum, Sum)

#: The statistics :func:`moments` computes, by their ``kind``.
MOMENT_KINDS: FrozenSet[str] = frozenset(
    {Sum.kind, Amax.kind, CentralSums.kind, Pow4Sum.kind})


class _Sum(torch.autograd.Function):
    """:class:`Sum`; its backward is a broadcast view of the gradient."""

    @staticmethod
    def forward(ctx, x, dims):
        ctx.shape = x.shape
        return Sum.value(x, dims)

    @staticmethod
    def reference(x, dims):
        return x.sum(dim=dims, keepdim=True)

    @staticmethod
    def backward(ctx, grad):
        # Linear: the expand is exact for higher derivatives too.
        return assemble(Sum.input_grad(grad), ctx.shape), None


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


class Moments(NamedTuple):
    """The statistics of x over some dims, keepdim; None where not asked
    for (the sum always is)."""
    sum: torch.Tensor
    amax: Optional[torch.Tensor]
    s2: Optional[torch.Tensor]  # sum of (x - mean)^2
    s3: Optional[torch.Tensor]  # sum of (x - mean)^3
    pow4: Optional[torch.Tensor]


def _moment_kernels(x: torch.Tensor, dims: Dims):
    """(kernels, over_c) when the compiled kernels compute the moments of
    x over ``dims`` (a 4-D CPU float map, over H, W or over C), else
    (None, None)."""
    if x.dim() == 4 and dims in (HW_DIMS, C_DIMS):
        kernels = stats_kernels_for(x)
        if kernels is not None:
            return kernels, dims == C_DIMS
    return None, None


def _contiguous(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.contiguous()


class _Moments(torch.autograd.Function):
    """:class:`Sum`, :class:`Amax`, :class:`CentralSums` and
    :class:`Pow4Sum` of x over ``dims`` as one node (``kinds``: which of
    them, by ``kind``; the sum always). Its outputs are those of
    :class:`Moments`; any may be unused (its gradient None)."""

    @staticmethod
    def forward(ctx, x, dims, kinds):
        want_max, want_central = Amax.kind in kinds, CentralSums.kind in kinds
        want_pow4 = Pow4Sum.kind in kinds
        n = count(x.shape, dims)
        kernels, over_c = _moment_kernels(x, dims)
        ties = m = s2 = s3 = p4 = None
        if kernels is not None:
            shape = [1 if i in dims else size
                     for i, size in enumerate(x.shape)]
            out = [None if t is None else t.view(shape)
                   for t in kernels.moments(x.contiguous(), over_c,
                                            want_max or want_central)]
            s, m, p4, ties, s2, s3 = out
            m = m if want_max else None
            p4 = p4 if want_pow4 else None
            s2, s3 = (s2, s3) if want_central else (None, None)
        else:
            s = Sum.value(x, dims)
            if want_max:
                m = Amax.value(x, dims)
            if want_central:
                s2, s3 = CentralSums.value(x, s / n, dims)
            if want_pow4:
                p4 = Pow4Sum.value(x, dims)
        ctx.dims, ctx.n, ctx.kinds = dims, n, kinds
        ctx.kernels, ctx.over_c = kernels, over_c
        ctx.save_for_backward(x, s, m, s2, ties)
        ctx.set_materialize_grads(False)
        return s, m, s2, s3, p4

    @staticmethod
    def reference(x, dims, kinds):
        s = x.sum(dim=dims, keepdim=True)
        m = x.amax(dim=dims, keepdim=True) if Amax.kind in kinds else None
        s2 = s3 = p4 = None
        if CentralSums.kind in kinds:
            # The mean from x: its gradient path is included.
            d = x - x.mean(dim=dims, keepdim=True)
            s2 = d.square().sum(dim=dims, keepdim=True)
            s3 = d.pow(3).sum(dim=dims, keepdim=True)
        if Pow4Sum.kind in kinds:
            p4 = x.pow(4).sum(dim=dims, keepdim=True)
        return s, m, s2, s3, p4

    @staticmethod
    def backward(ctx, gs, gm, g2, g3, g4):
        x, s, m, s2, ties = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: exact higher derivatives
            return reference_backward(_Moments.reference,
                                      (x, ctx.dims, ctx.kinds),
                                      (gs, gm, g2, g3, g4),
                                      ctx.needs_input_grad)
        if not ctx.needs_input_grad[0]:
            return None, None, None
        n, mean = ctx.n, None
        if g2 is not None or g3 is not None:
            mean = s / n
        if ctx.kernels is None:
            terms = [] if gs is None else Sum.input_grad(gs)
            if gm is not None:
                terms += Amax.input_grad(m, ctx.dims, None, gm)
            if mean is not None:
                terms += CentralSums.input_grad(mean, s2, n, g2, g3)
            if g4 is not None:
                terms += Pow4Sum.input_grad(g4)
            return assemble(terms, x.shape, x), None, None
        # The kernel's coefficients (per statistic, as CentralSums.input_grad
        # and the other terms define them): r the broadcast terms,
        # share = g_max / ties, a2 = 2 g2, a3 = 3 g3, k4 = 4 g4.
        r = torch.zeros_like(s) if gs is None else gs.expand_as(s).clone()
        a2 = a3 = None
        if mean is not None:
            a2 = torch.zeros_like(s) if g2 is None else 2 * g2
            a3 = torch.zeros_like(s) if g3 is None else 3 * g3
            if g3 is not None:
                r.sub_(3 * g3 * s2 / n)
        mx = share = k4 = None
        if gm is not None:
            mx, share = m, gm / ties
        if g4 is not None:
            k4 = 4 * g4
        grad = ctx.kernels.moments_backward(
            x.contiguous(), ctx.over_c, r,
            *(_contiguous(t) for t in (mx, share, mean, a2, a3, k4)))
        return grad, None, None


# --------------------------------------------------------------------------
# The functional forms (each a Function, or its reference when exporting).
# --------------------------------------------------------------------------
def sum_keepdim(x: torch.Tensor, dims: Dims) -> torch.Tensor:
    """``x.sum(dims, keepdim=True)`` (over C of a (B, C, H, W) map as a
    matrix product), differentiable."""
    return apply(_Sum, x, tuple(dims))


def mean_amax(x: torch.Tensor, dims: Dims, with_mean: bool = True
              ) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
    """(mean, amax) of x over ``dims``, keepdim (mean None unless
    ``with_mean``), from one node."""
    return apply(_MeanAmax, x, tuple(dims), with_mean)


def central_sums(x: torch.Tensor, mean: torch.Tensor,
                 dims: Dims) -> Tuple[torch.Tensor, torch.Tensor]:
    """(sum of (x - mean)^2, of (x - mean)^3) over ``dims``, keepdim;
    ``mean`` the detached mean of x over ``dims``."""
    return apply(_CentralSums, x, mean, tuple(dims))


def pow4_sum(x: torch.Tensor, dims: Dims) -> torch.Tensor:
    """sum over ``dims`` of x^4, keepdim."""
    return apply(_Pow4Sum, x, tuple(dims))


def gated_sum_c(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """sum over C of ``gate * x``: x (B, C, H, W), gate (B, C, 1, 1) ->
    (B, 1, H, W), without forming the product."""
    return apply(_GatedSumC, x, gate)


def gated_pow4_sum_c(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """sum over C of ``(gate * x)^4``: x (B, C, H, W), gate (B, C, 1, 1) ->
    (B, 1, H, W), without forming the product."""
    return apply(_GatedPow4SumC, x, gate)


def moments(x: torch.Tensor, dims: Dims,
            kinds: FrozenSet[str] = MOMENT_KINDS) -> Moments:
    """The statistics of x over ``dims``, keepdim, from one node.

    Args:
        x (Tensor): the map, e.g. (B, C, H, W).
        dims: the reduced dimensions (:data:`~.dims.HW_DIMS`,
            :data:`~.dims.C_DIMS` or others).
        kinds: which of :data:`MOMENT_KINDS` to compute (by the ``kind``
            of a class of ``stat_formulas.py``; the sum always is).

    Returns:
        Moments: the sum; the max; the central sums of the squares and
        cubes (centred on the mean); the sum of x^4 (None where not in
        ``kinds``).
    """
    unknown = set(kinds) - MOMENT_KINDS
    if unknown:
        raise ValueError(f'moments cannot compute {sorted(unknown)}; valid '
                         f'kinds: {sorted(MOMENT_KINDS)}')
    # A sorted tuple: hashable and constant for a compiler (a frozenset
    # made here could not be rebuilt at a graph break).
    return Moments(*apply(_Moments, x, tuple(dims), tuple(sorted(kinds))))
