"""The statistics of ``layers/stat_formulas.py`` (SASE, arXiv 2411.08333).

Each statistic is defined once (its ``value`` and its closed-form
``input_grad`` terms) and used by its autograd Function, by the fused SASE
block and, restated, by the compiled kernels. Here each definition is
checked against plain torch: its value, and its gradient terms
(``grad_terms.assemble``) against autograd of the plain formula, ties of
the maximum included.
"""
import pytest
import torch
from stat_inputs import central_plain, feature_map, gate

from sase_mm.models.layers.dims import C_DIMS, HW_DIMS, count
from sase_mm.models.layers.grad_terms import assemble
from sase_mm.models.layers.stat_formulas import (Amax, CentralSums,
                                                 GatedPow4SumC, GatedSumC,
                                                 Pow4Sum, Sum, bmm_sum_c)


# name -> (definition(x, aux) -> outputs, plain torch(x, aux) -> outputs,
#          terms(x, aux, outputs, grads) -> input-gradient terms), where aux
# is the gate (gated statistics) or the reduced dims (the others).
def _central_def(x, dims):
    return CentralSums.value(x, x.mean(dims, keepdim=True), dims)


STATS = {
    'sum': (lambda x, d: (Sum.value(x, d), ),
            lambda x, d: (x.sum(d, keepdim=True), ),
            lambda x, d, outs, gs: Sum.input_grad(*gs)),
    'amax': (lambda x, d: (Amax.value(x, d), ),
             lambda x, d: (x.amax(d, keepdim=True), ),
             lambda x, d, outs, gs: Amax.input_grad(outs[0], d, None, *gs)),
    'amax_counted': (
        lambda x, d: (Amax.value(x, d), ),
        lambda x, d: (x.amax(d, keepdim=True), ),
        lambda x, d, outs, gs: Amax.input_grad(
            outs[0], d, Amax.ties(x, outs[0], d), *gs)),
    'pow4': (lambda x, d: (Pow4Sum.value(x, d), ),
             lambda x, d: (x.pow(4).sum(d, keepdim=True), ),
             lambda x, d, outs, gs: Pow4Sum.input_grad(*gs)),
    'central': (_central_def, central_plain,
                lambda x, d, outs, gs: CentralSums.input_grad(
                    x.mean(d, keepdim=True), outs[0], count(x.shape, d),
                    *gs)),
    'gated_sum': (lambda x, g: (GatedSumC.value(x, g), ),
                  lambda x, g: ((g * x).sum(1, keepdim=True), ),
                  lambda x, g, outs, gs: GatedSumC.input_grad(g, *gs)),
    'gated_pow4': (lambda x, w: (GatedPow4SumC.value(x, w), ),
                   lambda x, w: ((w * x.pow(4)).sum(1, keepdim=True), ),
                   lambda x, w, outs, gs: GatedPow4SumC.input_grad(w, *gs)),
}
CASES = [(name, dims) for name in STATS for dims in (HW_DIMS, C_DIMS)
         if not name.startswith('gated') or dims == C_DIMS]


def _aux(name, dims):
    return gate() if name.startswith('gated') else dims


@pytest.mark.parametrize('name,dims', CASES)
def test_value_is_the_plain_formula(name, dims):
    definition, plain, _ = STATS[name]
    x, aux = feature_map(), _aux(name, dims)
    for got, want in zip(definition(x, aux), plain(x, aux)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# The central sums also with either gradient absent (drop: which one).
GRAD_CASES = [(n, d, None) for n, d in CASES] + [
    ('central', d, drop) for d in (HW_DIMS, C_DIMS) for drop in (0, 1)]


@pytest.mark.parametrize('name,dims,drop', GRAD_CASES)
def test_input_grad_terms_are_the_gradient_of_the_plain_formula(
        name, dims, drop):
    """``assemble(input_grad(...))`` equals autograd through the plain
    formula, ties of the maximum sharing as ``torch.amax``'s do; for the
    central sums also with either gradient absent."""
    definition, plain, terms = STATS[name]
    x, aux = feature_map(), _aux(name, dims)
    outs = definition(x, aux)
    torch.manual_seed(1)
    grads = [None if i == drop else torch.randn_like(o)
             for i, o in enumerate(outs)]
    xg = x.clone().requires_grad_()
    pairs = [(o, g) for o, g in zip(plain(xg, aux), grads) if g is not None]
    want, = torch.autograd.grad([o for o, _ in pairs], xg,
                                [g for _, g in pairs])
    got = assemble(terms(x, aux, outs, grads), x.shape, x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('name', ['gated_sum', 'gated_pow4'])
def test_gated_weight_gradients(name):
    """The gate (weight) gradients the gated statistics define."""
    _, plain, _ = STATS[name]
    x, g8 = feature_map(), gate().requires_grad_()
    out, = plain(x, g8)
    g = torch.randn_like(out)
    want, = torch.autograd.grad(out, g8, g)
    got = (GatedSumC.gate_grad(x, g) if name == 'gated_sum' else
           GatedPow4SumC.weight_grad(Pow4Sum.pow4(x), g))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_ties_count_every_maximum():
    x = feature_map()
    m = Amax.value(x, HW_DIMS)
    ties = Amax.ties(x, m, HW_DIMS)
    assert ties[0, 1].item() == 2  # the planted pair
    assert ties[1, 3].item() == 12  # the constant channel: all H * W
    want = (x == m).sum(HW_DIMS, keepdim=True).to(x.dtype)
    torch.testing.assert_close(ties, want)


def test_bmm_sum_c_is_the_sum_over_channels():
    x = feature_map(ties=False)
    torch.testing.assert_close(bmm_sum_c(x), x.sum(1, keepdim=True),
                               rtol=1e-12, atol=1e-12)
