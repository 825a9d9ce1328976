"""The statistics' autograd Functions of ``layers/stat_functions.py`` (SASE,
arXiv 2411.08333).

Each Function is checked against plain autograd of its formula (values,
and gradients with and without ``create_graph``, the latter keeping a
graph); each functional form against its plain ``reference``, which it
runs instead of the Function while the layers are exportable.
"""
import pytest
import torch
from stat_inputs import central_plain, feature_map, gate

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
