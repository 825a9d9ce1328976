"""The fast forms of ``layers/squeeze.py`` against their plain forms (SASE,
arXiv 2411.08333): adaptive average pooling as two matrix products against
torch's pooling, and the spatial L2 norm's Function against its
reference, which it runs while the layers are exportable. (Every operation
of the four sets: ``test_operations.py``.)"""
import math

import pytest
import torch
import torch.nn.functional as F

from sase_mm.models.layers.config import exportable
from sase_mm.models.layers.squeeze import (SpatialL2Norm, _LayerNormSquareSum,
                                           _pool_matrix, adaptive_avg_pool)


@pytest.mark.parametrize('n_in,n_out', [(7, 3), (8, 8), (5, 8), (13, 4),
                                        (1, 3), (3, 1)])
def test_pool_matrix_rows(n_in, n_out):
    """Row i averages inputs floor(i n_in / n_out) .. ceil((i + 1) n_in /
    n_out) - 1, the ceiling written for non-negative integers."""
    p = _pool_matrix(n_in, n_out, torch.zeros((), dtype=torch.float64))
    for i in range(n_out):
        lo = i * n_in // n_out
        hi = math.ceil((i + 1) * n_in / n_out)
        want = torch.zeros(n_in, dtype=torch.float64)
        want[lo:hi] = 1 / (hi - lo)
        torch.testing.assert_close(p[i], want)


@pytest.mark.parametrize('size,out', [((9, 7), (8, 8)), ((16, 16), (8, 8)),
                                      ((3, 5), (8, 8)), ((8, 8), (9, 7)),
                                      ((6, 6), (6, 6))])
def test_adaptive_avg_pool_is_torchs(size, out):
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    got, want = adaptive_avg_pool(x, out), F.adaptive_avg_pool2d(x, out)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(want)
    torch.testing.assert_close(torch.autograd.grad(got, x, g)[0],
                               torch.autograd.grad(want, x, g)[0])


def test_same_size_shortcut_only_when_not_exportable():
    x = torch.randn(2, 3, 6, 5)
    assert adaptive_avg_pool(x, (6, 5)) is x
    with exportable():
        y = adaptive_avg_pool(x, (6, 5))
    assert y is not x
    torch.testing.assert_close(y, x)


def test_spatial_l2_norm_function_is_its_reference():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(4, 3, dtype=torch.float64) + 0.5).requires_grad_()
    b = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    got = _LayerNormSquareSum.apply(x, w, b, 1e-5)
    want = _LayerNormSquareSum.reference(x, w, b, 1e-5)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(want)
    for a, r in zip(torch.autograd.grad(got, (x, w, b), g),
                    torch.autograd.grad(want, (x, w, b), g)):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)


def _graph_names(t):
    """The class names of every autograd node behind t."""
    seen, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo += [n for n, _ in node.next_functions]
    return {type(n).__name__ for n in seen}


def test_spatial_l2_norm_exportable_form():
    op = SpatialL2Norm((4, 3)).double()
    torch.nn.init.normal_(op.bias)
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    fast = op(x)
    with exportable():
        plain = op(x)
    assert '_LayerNormSquareSumBackward' in _graph_names(fast)
    assert '_LayerNormSquareSumBackward' not in _graph_names(plain)
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-12)
