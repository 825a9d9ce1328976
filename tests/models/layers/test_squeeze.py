"""The fast forms of ``layers/squeeze.py`` against their plain forms (SASE,
arXiv 2411.08333): adaptive average pooling (a window, by the compiled
window means or torch's pooling, a repetition, or two matrix products
with cached matrices) against torch's pooling, and the
spatial L2 norm's Function, through the compiled kernels and through
PyTorch (the ``stats_path`` fixture), against its reference, which it runs
while the layers are exportable. (Every operation of the four sets:
``test_operations.py``.)"""
import math

import pytest
import torch
import torch.nn.functional as F

from data_utils.autograd_graph import node_names

from sase_mm.models.layers import squeeze
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


# Sizes with a whole window per output ((16, 16), (32, 24), (8, 5) to
# (1, 1)), a whole number of outputs per input ((8, 8) to (16, 24), (1, 1)
# to (8, 8)), neither, and the same size.
POOL_SIZES = [((9, 7), (8, 8)), ((16, 16), (8, 8)), ((32, 24), (8, 8)),
              ((8, 5), (1, 1)), ((3, 5), (8, 8)), ((8, 8), (9, 7)),
              ((8, 8), (16, 24)), ((1, 1), (8, 8)), ((6, 6), (6, 6))]


@pytest.mark.parametrize('mode', ['eager', 'exportable'])
@pytest.mark.parametrize('size,out', POOL_SIZES, ids=str)
def test_adaptive_avg_pool_is_torchs(size, out, mode):
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    with exportable(mode == 'exportable'):
        got = adaptive_avg_pool(x, out)
    want = F.adaptive_avg_pool2d(x, out)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(want)
    torch.testing.assert_close(torch.autograd.grad(got, x, g)[0],
                               torch.autograd.grad(want, x, g)[0])


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32], ids=str)
def test_adaptive_avg_pool_by_windows_on_both_paths(stats_path, dtype):
    """A whole window per output: the compiled ``window_mean`` node where
    the kernels run, ``F.avg_pool2d`` otherwise; torch's values and
    gradients either way, and a second derivative (through the gradient's
    own graph) as torch's."""
    x = torch.randn(2, 3, 16, 12, dtype=dtype, requires_grad=True)
    got = adaptive_avg_pool(x, (4, 6))
    want = F.adaptive_avg_pool2d(x, (4, 6))
    assert ('_WindowMeanBackward' in node_names(got)) == (
        stats_path == 'kernels')
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else {}
    torch.testing.assert_close(got, want, **tol)
    g = torch.randn_like(want, requires_grad=True)
    (gx, ), (wx, ) = (torch.autograd.grad(y, x, g, create_graph=True)
                      for y in (got, want))
    torch.testing.assert_close(gx, wx, **tol)
    v = torch.randn_like(gx)
    torch.testing.assert_close(torch.autograd.grad(gx, g, v)[0],
                               torch.autograd.grad(wx, g, v)[0], **tol)


def test_window_mean_gradcheck(stats_path):
    x = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: adaptive_avg_pool(t, (2, 2)), (x, ))
    assert torch.autograd.gradgradcheck(
        lambda t: adaptive_avg_pool(t, (2, 2)), (x, ))


def test_adaptive_avg_pool_of_any_leading_dims():
    x = torch.randn(2, 3, 4, 16, 8, dtype=torch.float64)
    for out in ((8, 8), (4, 4), (32, 16), (5, 3)):
        torch.testing.assert_close(
            adaptive_avg_pool(x, out),
            F.adaptive_avg_pool2d(x.reshape(-1, 16, 8), out).reshape(
                2, 3, 4, *out), rtol=1e-12, atol=1e-12)


def test_pool_matrices_are_built_once(monkeypatch):
    """Per sizes, dtype and device, outside the graph; exportable, they
    are built in the graph at every call."""
    built = []
    real = squeeze._pool_matrix

    def count(n_in, n_out, like):
        built.append((n_in, n_out, like.dtype))
        return real(n_in, n_out, like)

    monkeypatch.setattr(squeeze, '_pool_matrix', count)
    squeeze._cached_pool_matrix.cache_clear()
    x = torch.randn(2, 3, 9, 7)
    for _ in range(3):
        adaptive_avg_pool(x, (8, 8))
    assert sorted(built) == [(7, 8, torch.float32), (9, 8, torch.float32)]
    adaptive_avg_pool(x.double(), (8, 8))
    assert len(built) == 4
    with exportable():
        adaptive_avg_pool(x, (8, 8))
        adaptive_avg_pool(x, (8, 8))
    assert len(built) == 8


def test_pool_matrices_first_built_in_inference_mode_serve_training():
    """A matrix cached under ``inference_mode`` is a normal tensor: a later
    training pass can save it for its backward."""
    squeeze._cached_pool_matrix.cache_clear()
    x = torch.randn(2, 3, 9, 7)
    with torch.inference_mode():
        adaptive_avg_pool(x, (8, 8))
    x.requires_grad_()
    adaptive_avg_pool(x, (8, 8)).sum().backward()
    torch.testing.assert_close(
        x.grad, torch.autograd.grad(
            F.adaptive_avg_pool2d(x, (8, 8)).sum(), x)[0])


def test_pool_under_compile_builds_its_matrices_in_the_graph(monkeypatch):
    """Compiling, no shape shortcut and no cache: the matrix products."""
    monkeypatch.setattr(torch.compiler, 'is_compiling', lambda: True)
    monkeypatch.setattr(squeeze, '_cached_pool_matrix', None)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(adaptive_avg_pool(x, (8, 8)),
                               F.adaptive_avg_pool2d(x, (8, 8)))
    assert adaptive_avg_pool(x, (16, 16)) is x


def test_same_size_shortcut_only_when_not_exportable():
    x = torch.randn(2, 3, 6, 5)
    assert adaptive_avg_pool(x, (6, 5)) is x
    with exportable():
        y = adaptive_avg_pool(x, (6, 5))
    assert y is not x
    torch.testing.assert_close(y, x)


def _ln_inputs(shape, dtype=torch.float64):
    size = shape[2:]
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    w = (torch.rand(size, dtype=dtype) + 0.5).requires_grad_()
    b = torch.randn(size, dtype=dtype, requires_grad=True)
    return x, w, b


# (B, C, H, W): odd sizes, H * W = 1 (a zero normalised map), C = 1.
LN_SHAPES = [(2, 5, 4, 3), (3, 7, 5, 9), (2, 5, 1, 1), (2, 1, 3, 4),
             (1, 1, 1, 1)]


def _assert_is_reference(x, w, b, inputs=None):
    """The Function's value on (x, w, b) and its gradients with respect to
    ``inputs`` (default: x, w, b) equal the reference's."""
    inputs = (x, w, b) if inputs is None else inputs
    got = _LayerNormSquareSum.apply(x, w, b, 1e-5)
    want = _LayerNormSquareSum.reference(x, w, b, 1e-5)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(want)
    for a, r in zip(torch.autograd.grad(got, inputs, g),
                    torch.autograd.grad(want, inputs, g)):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize('shape', LN_SHAPES, ids=str)
def test_spatial_l2_norm_function_is_its_reference(stats_path, shape):
    _assert_is_reference(*_ln_inputs(shape))


def test_spatial_l2_norm_some_gradients(stats_path):
    """Only the gradients asked for are computed, each still the
    reference's."""
    x, w, b = _ln_inputs((2, 5, 4, 3))
    want = _LayerNormSquareSum.reference(x, w, b, 1e-5)
    g = torch.randn_like(want)
    for wanted in ((x, ), (w, ), (b, ), (w, b)):
        got = _LayerNormSquareSum.apply(x, w, b, 1e-5)
        for a, r in zip(torch.autograd.grad(got, wanted, g),
                        torch.autograd.grad(want, wanted, g,
                                            retain_graph=True)):
            torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)


def test_spatial_l2_norm_of_a_non_contiguous_map(stats_path):
    x, w, b = _ln_inputs((2, 5, 3, 4))
    w, b = (t.detach().t().contiguous().requires_grad_() for t in (w, b))
    _assert_is_reference(x.transpose(2, 3), w, b, inputs=(x, w, b))


def test_spatial_l2_norm_gradcheck(stats_path):
    x, w, b = _ln_inputs((2, 3, 3, 2))
    assert torch.autograd.gradcheck(
        lambda *t: _LayerNormSquareSum.apply(*t, 1e-5), (x, w, b))
    assert torch.autograd.gradgradcheck(
        lambda *t: _LayerNormSquareSum.apply(*t, 1e-5), (x, w, b))


def test_spatial_l2_norm_float32(stats_path):
    """Float32 (the kernels sum in the scalar type) within float32
    rounding of the float64 values."""
    x, w, b = _ln_inputs((4, 16, 32, 32))
    want = _LayerNormSquareSum.apply(x, w, b, 1e-5)
    got = _LayerNormSquareSum.apply(x.float(), w.float(), b.float(), 1e-5)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_spatial_l2_norm_exportable_form():
    op = SpatialL2Norm((4, 3)).double()
    torch.nn.init.normal_(op.bias)
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    fast = op(x)
    with exportable():
        plain = op(x)
    assert '_LayerNormSquareSumBackward' in node_names(fast)
    assert '_LayerNormSquareSumBackward' not in node_names(plain)
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-12)
