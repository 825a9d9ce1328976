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
"""
from typing import Optional, Tuple

import torch

from .dims import Dims, count
from .grad_terms import assemble
from .reference import apply, reference_backward
from .stat_formulas import (Amax, CentralSums, GatedPow4SumC, GatedSumC,
                            Pow4Sum, Sum)


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
