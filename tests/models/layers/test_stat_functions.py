"""The statistics' autograd Functions of ``layers/stat_functions.py`` (SASE,
arXiv 2411.08333).

Each Function is checked against plain autograd of its formula (values,
and gradients with and without ``create_graph``, the latter keeping a
graph); each functional form against its plain ``reference``, which it
runs instead of the Function while the layers are exportable.

:func:`moments`, all the statistics from one node, is checked the same way
through both of its paths (the compiled kernels and the PyTorch formulas,
the ``stats_path`` fixture): values and gradients against plain autograd
of the plain formulas for every subset of statistics and any subset of
used outputs, on maps with ties, odd sizes, H * W = 1 and C = 1; gradcheck;
second derivatives through its reference.
"""
import itertools

import pytest
import torch
from stat_inputs import central_plain, feature_map, gate
from data_utils.stat_paths import built_stats_kernels

from sase_mm.models.layers import stat_functions as sf
from sase_mm.models.layers.config import exportable
from sase_mm.models.layers.dims import C_DIMS, HW_DIMS

# Each Function against its definition: (inputs(x, gate), apply, plain).
FUNCTIONS = {
    '_Sum': (lambda x, g: (x, ), lambda x, d: sf._Sum.apply(x, d),
             lambda x, d: x.sum(d, keepdim=True)),
    '_MeanAmax': (lambda x, g: (x, ),
                  lambda x, d: sf._MeanAmax.apply(x, d, True),
                  lambda x, d: (x.mean(d, keepdim=True),
                                x.amax(d, keepdim=True))),
    '_MeanAmax-max': (lambda x, g: (x, ),
                      lambda x, d: sf._MeanAmax.apply(x, d, False)[1],
                      lambda x, d: x.amax(d, keepdim=True)),
    '_CentralSums': (lambda x, g: (x, ),
                     lambda x, d: sf._CentralSums.apply(
                         x, x.mean(d, keepdim=True).detach(), d),
                     central_plain),
    '_Pow4Sum': (lambda x, g: (x, ), lambda x, d: sf._Pow4Sum.apply(x, d),
                 lambda x, d: x.pow(4).sum(d, keepdim=True)),
    '_GatedSumC': (lambda x, g: (x, g),
                   lambda x, g, d: sf._GatedSumC.apply(x, g),
                   lambda x, g, d: (g * x).sum(1, keepdim=True)),
    '_GatedPow4SumC': (lambda x, g: (x, g),
                       lambda x, g, d: sf._GatedPow4SumC.apply(x, g),
                       lambda x, g, d: (g * x).pow(4).sum(1, keepdim=True)),
}

# Their gradients depend on the inputs: under create_graph they keep a graph.
NONLINEAR = ('_CentralSums', '_Pow4Sum', '_GatedSumC', '_GatedPow4SumC')


FUNCTION_CASES = [(fn, d) for fn in FUNCTIONS for d in (HW_DIMS, C_DIMS)
                  if not fn.startswith('_Gated') or d == C_DIMS]


@pytest.mark.parametrize('create_graph', [False, True])
@pytest.mark.parametrize('fn,dims', FUNCTION_CASES)
def test_function_value_and_gradients(fn, dims, create_graph):
    """Each Function's outputs and input gradients equal plain autograd of
    its formula: the lean backward (from the terms) and, under
    ``create_graph``, the reference route; the latter keeps a graph."""
    inputs, apply, plain = FUNCTIONS[fn]
    x, g8 = feature_map().requires_grad_(), gate().requires_grad_()
    args = inputs(x, g8)
    got = apply(*args, dims)
    want = plain(*args, dims)
    got, want = ((t, ) if torch.is_tensor(t) else t for t in (got, want))
    grads = [torch.randn_like(w) for w in want]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    got_g = torch.autograd.grad(got, args, grads, create_graph=create_graph)
    want_g = torch.autograd.grad(want, args, grads)
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)
    if create_graph and fn in NONLINEAR:  # a graph of the gradient
        assert all(g.requires_grad for g in got_g)


def test_lone_broadcast_gradient_stays_a_view():
    """A sum's (or a mean's) gradient is a broadcast view, not a full-size
    tensor: nothing is written on the hot path."""
    x = feature_map().requires_grad_()
    for dims, axes in ((C_DIMS, (1, )), (HW_DIMS, (2, 3))):
        g, = torch.autograd.grad(sf.sum_keepdim(x, dims).sum(), x)
        assert all(g.stride(a) == 0 for a in axes), (dims, g.stride())
        mean, _ = sf.mean_amax(x, dims)
        g, = torch.autograd.grad(mean.sum(), x)
        assert all(g.stride(a) == 0 for a in axes), (dims, g.stride())


# functional form -> (its Function, its arguments for x, gate and dims)
FORMS = {
    sf.sum_keepdim: (sf._Sum, lambda x, g, d: (x, d)),
    sf.mean_amax: (sf._MeanAmax, lambda x, g, d: (x, d, True)),
    sf.central_sums: (sf._CentralSums, lambda x, g, d: (
        x, x.mean(d, keepdim=True).detach(), d)),
    sf.pow4_sum: (sf._Pow4Sum, lambda x, g, d: (x, d)),
    sf.gated_sum_c: (sf._GatedSumC, lambda x, g, d: (x, g)),
    sf.gated_pow4_sum_c: (sf._GatedPow4SumC, lambda x, g, d: (x, g)),
}


def _node_names(out):
    outs = out if isinstance(out, tuple) else (out, )
    return {type(o.grad_fn).__name__ for o in outs if o is not None}


@pytest.mark.parametrize('form', list(FORMS), ids=lambda f: f.__name__)
@pytest.mark.parametrize('dims', [HW_DIMS, C_DIMS])
def test_exportable_form_is_the_plain_reference(form, dims):
    """While exportable, a functional form runs its Function's reference
    (no node of the Function in the graph) and gives the Function's
    values; otherwise it is the Function."""
    function, arguments = FORMS[form]
    x, g8 = feature_map().requires_grad_(), gate().requires_grad_()
    args = arguments(x, g8, dims)
    fast = form(*args)
    with exportable():
        plain = form(*args)
    node = f'{function.__name__}Backward'
    assert node in _node_names(fast)
    assert node not in _node_names(plain)
    fast = fast if isinstance(fast, tuple) else (fast, )
    plain = plain if isinstance(plain, tuple) else (plain, )
    for a, b in zip(fast, plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# -------------------------------------------------------------- moments
#: (B, C, H, W): odd sizes, H * W = 1, C = 1, one element, and 300
#: positions (more than one task of columns of the kernels).
MOMENT_SHAPES = [(3, 7, 5, 3), (2, 5, 1, 1), (2, 1, 3, 4), (1, 1, 1, 1),
                 (2, 3, 20, 15)]
#: Every subset of the statistics beside the sum (always computed).
KIND_SETS = [frozenset(c) for r in range(4) for c in itertools.combinations(
    ('amax', 'central', 'pow4'), r)]


def _plain_moments(x, dims):
    """The five statistics in plain torch (central sums: central_plain)."""
    return (x.sum(dims, keepdim=True), x.amax(dims, keepdim=True),
            *central_plain(x, dims), x.pow(4).sum(dims, keepdim=True))


def _wanted(kinds):
    """Which of Moments' five outputs ``kinds`` asks for."""
    return (True, 'amax' in kinds, 'central' in kinds, 'central' in kinds,
            'pow4' in kinds)


def _check_moments(x, dims, kinds, used=None):
    """moments(x, dims, kinds) against plain autograd: the outputs asked
    for (the others None), and the input gradient for random gradients of
    the ``used`` outputs (default: all asked for)."""
    x = x.detach().requires_grad_()
    got = sf.moments(x, dims, kinds)
    want = _plain_moments(x, dims)
    wanted = _wanted(kinds)
    used = wanted if used is None else used
    for g, w, on in zip(got, want, wanted):
        if not on:
            assert g is None
        else:
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)
    pairs = [(g, w) for g, w, on in zip(got, want, used) if on]
    grads = [torch.randn_like(w) for _, w in pairs]
    got_g, = torch.autograd.grad([g for g, _ in pairs], x, grads)
    want_g, = torch.autograd.grad([w for _, w in pairs], x, grads)
    torch.testing.assert_close(got_g, want_g, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize('kinds', KIND_SETS, ids=lambda k: '+'.join(
    sorted(k)) or 'sum')
@pytest.mark.parametrize('dims', [HW_DIMS, C_DIMS])
def test_moments_are_the_plain_formulas(stats_path, dims, kinds):
    """Ties of the maximum over H, W and over C, a constant channel."""
    _check_moments(feature_map(), dims, kinds)


@pytest.mark.parametrize('shape', MOMENT_SHAPES, ids=str)
@pytest.mark.parametrize('dims', [HW_DIMS, C_DIMS])
def test_moments_at_odd_and_degenerate_sizes(stats_path, dims, shape):
    x = torch.randn(shape, dtype=torch.float64)
    _check_moments(x, dims, sf.MOMENT_KINDS)


@pytest.mark.parametrize('dims', [HW_DIMS, C_DIMS])
def test_moments_with_some_outputs_unused(stats_path, dims):
    """An unused output gets no gradient (None): its terms drop out."""
    x = feature_map()
    for used in itertools.product((False, True), repeat=5):
        if any(used):
            _check_moments(x, dims, sf.MOMENT_KINDS, used)


@pytest.mark.parametrize('dims', [HW_DIMS, C_DIMS])
def test_moments_of_a_non_contiguous_map(stats_path, dims):
    x = feature_map().transpose(2, 3)
    assert not x.is_contiguous()
    _check_moments(x, dims, sf.MOMENT_KINDS)


@pytest.mark.parametrize('dims', [HW_DIMS, C_DIMS])
def test_moments_gradcheck(stats_path, dims):
    """Finite differences (a map without ties: the max is then smooth)."""
    x = torch.randn(2, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: tuple(sf.moments(t, dims)), (x, ))


@pytest.mark.parametrize('dims', [HW_DIMS, C_DIMS])
def test_moments_second_derivatives(stats_path, dims):
    """Under create_graph the backward differentiates the reference: the
    gradient has a graph, and its own gradient is plain autograd's."""
    x = feature_map(ties=False).requires_grad_()
    outs = sf.moments(x, dims)
    plain = _plain_moments(x, dims)
    grads = [torch.randn_like(p) for p in plain]
    v = torch.randn_like(x)
    got, = torch.autograd.grad(outs, x, grads, create_graph=True)
    want, = torch.autograd.grad(plain, x, grads, create_graph=True)
    assert got.requires_grad
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(
        torch.autograd.grad((got * v).sum(), x)[0],
        torch.autograd.grad((want * v).sum(), x)[0], rtol=1e-9, atol=1e-10)
    assert torch.autograd.gradgradcheck(
        lambda t: tuple(sf.moments(t, dims)),
        (torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True), ))


def test_moments_float32_agree_with_float64(stats_path):
    """Float32 sums (the kernels accumulate in the scalar type) within
    float32 rounding of the float64 values."""
    x = torch.randn(4, 16, 32, 32, dtype=torch.float64)
    for dims in (HW_DIMS, C_DIMS):
        for got, want in zip(sf.moments(x.float(), dims),
                             sf.moments(x, dims)):
            scale = want.abs().amax()
            assert (got.double() - want).abs().amax() <= 1e-5 * scale


@pytest.mark.parametrize('dims', [HW_DIMS, C_DIMS])
def test_moments_exportable_form_is_the_reference(dims):
    x = feature_map().requires_grad_()
    fast = sf.moments(x, dims)
    with exportable():
        plain = sf.moments(x, dims)
    assert '_MomentsBackward' in _node_names(fast)
    assert '_MomentsBackward' not in _node_names(plain)
    for a, b in zip(fast, plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_moments_refuse_an_unknown_statistic():
    with pytest.raises(ValueError, match=r"cannot compute \['median'\]; "
                       r"valid kinds: \['amax', 'central', 'pow4', 'sum'\]"):
        sf.moments(feature_map(), HW_DIMS, {'sum', 'median'})


def test_moments_run_the_kernels_where_they_apply(monkeypatch):
    """The kernels' path is taken on a CPU float map over H, W or C (so
    the tests of the ``kernels`` path test them), not over other dims."""
    built_stats_kernels()
    calls = []
    real = sf.stats_kernels_for

    def spy(x):
        calls.append(x.shape)
        return real(x)

    monkeypatch.setattr(sf, 'stats_kernels_for', spy)
    x = feature_map()
    assert sf._moment_kernels(x, HW_DIMS)[0] is not None
    assert sf._moment_kernels(x, C_DIMS)[1] is True
    assert sf._moment_kernels(x, (1, 2, 3)) == (None, None)
    assert len(calls) == 2
