"""The plain reference of a hand-written autograd Function,
``layers/reference.py`` (SASE, arXiv 2411.08333): :func:`apply` runs the
Function, or its reference while the layers are exportable; and
:func:`reference_backward` takes each input's partial derivative."""
import pytest
import torch

from sase_mm.models.layers.config import exportable
from sase_mm.models.layers.reference import apply, reference_backward


class _Double(torch.autograd.Function):
    """2 x, with a deliberately different backward (to tell the two
    routes apart)."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def reference(x):
        return x + x

    @staticmethod
    def backward(ctx, grad):
        return 3 * grad


class _NoReference(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad


def test_apply_runs_the_function_else_the_reference():
    x = torch.randn(3, requires_grad=True)
    g, = torch.autograd.grad(apply(_Double, x).sum(), x)
    assert torch.equal(g, torch.full_like(x, 3.0))  # the Function's
    with exportable():
        y = apply(_Double, x)
    g, = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g, torch.full_like(x, 2.0))  # the reference's
    assert torch.equal(y, 2 * x)


def test_a_function_without_reference_is_refused_when_exportable():
    x = torch.randn(3)
    assert torch.equal(apply(_NoReference, x), x)
    with exportable(), pytest.raises(TypeError, match='no plain'):
        apply(_NoReference, x)


def test_reference_backward_takes_partial_derivatives():
    """d/dx of x * gate with gate = f(x) held fixed: the path through the
    gate is not followed, and the result keeps a graph."""
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    gate = x.sigmoid()
    grad = torch.randn(4, dtype=torch.float64)
    gx, gg = reference_backward(lambda a, b: a * b, (x, gate), (grad, ),
                                (True, True))
    torch.testing.assert_close(gx, grad * gate)
    torch.testing.assert_close(gg, grad * x)
    assert gx.requires_grad  # create_graph
    none, = reference_backward(lambda a: a * 2, (x, ), (None, ), (True, ))
    assert none is None
