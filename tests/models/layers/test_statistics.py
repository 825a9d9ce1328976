"""The feature statistics of ``layers/statistics.py`` (SASE, arXiv 2411.08333).

Each statistic is defined once (its ``value`` and its closed-form
``input_grad`` terms) and used by its autograd Function, by the fused SASE
block and, restated, by the compiled kernels. Here each definition is
checked against plain torch (values, and gradients by autograd of the plain
formula, ties of the maximum included), each Function against its
definition (with and without ``create_graph``), and each squeeze
operation's ``reads()`` declaration against what it actually reads.
"""
import pytest
import torch

from sase_mm.models.layers import squeeze
from sase_mm.models.layers.dims import C_DIMS, HW_DIMS, count
from sase_mm.models.layers.statistics import (
    MAP, Amax, CentralSums, FeatureStats, GatedPow4SumC, GatedSumC, Pow4Sum,
    Read, Sum, _CentralSums, _GatedPow4SumC, _GatedSumC, _MeanAmax, _Pow4Sum,
    _Sum, assemble, sum_keepdim)
from sase_mm.models.sase.space import CHANNEL_SQUEEZE, SPATIAL_SQUEEZE

B, C, H, W = 2, 5, 3, 4
DT = torch.float64


def _x(ties=True):
    torch.manual_seed(0)
    x = torch.randn(B, C, H, W, dtype=DT)
    if ties:  # repeated maxima over H, W and over C, and a constant channel
        x[0, 1, 0, 0] = x[0, 1, 2, 3] = x[0, 1].max() + 1
        x[1, :, 1, 1] = x[1, :, 1, 1].max()
        x[1, 3] = 0.25
    return x


def _gate():
    return torch.rand(B, C, 1, 1, dtype=DT) + 0.5


# name -> (definition(x, aux) -> outputs, plain torch(x, aux) -> outputs,
#          terms(x, aux, outputs, grads) -> input-gradient terms), where aux
# is the gate (gated statistics) or the reduced dims (the others).
def _central_def(x, dims):
    return CentralSums.value(x, x.mean(dims, keepdim=True), dims)


def _central_ref(x, dims):
    d = x - x.mean(dims, keepdim=True)
    return d.pow(2).sum(dims, keepdim=True), d.pow(3).sum(dims, keepdim=True)


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
    'central': (_central_def, _central_ref,
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
    return _gate() if name.startswith('gated') else dims


@pytest.mark.parametrize('name,dims', CASES)
def test_value_is_the_plain_formula(name, dims):
    definition, plain, _ = STATS[name]
    x, aux = _x(), _aux(name, dims)
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
    x, aux = _x(), _aux(name, dims)
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
    x, gate = _x(), _gate().requires_grad_()
    out, = plain(x, gate)
    g = torch.randn_like(out)
    want, = torch.autograd.grad(out, gate, g)
    got = (GatedSumC.gate_grad(x, g) if name == 'gated_sum' else
           GatedPow4SumC.weight_grad(Pow4Sum.pow4(x), g))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


# Each Function against its definition: (inputs(x, gate), apply, plain).
FUNCTIONS = {
    '_Sum': (lambda x, g: (x, ), lambda x, d: _Sum.apply(x, d),
             lambda x, d: x.sum(d, keepdim=True)),
    '_MeanAmax': (lambda x, g: (x, ),
                  lambda x, d: _MeanAmax.apply(x, d, True),
                  lambda x, d: (x.mean(d, keepdim=True),
                                x.amax(d, keepdim=True))),
    '_MeanAmax-max': (lambda x, g: (x, ),
                      lambda x, d: _MeanAmax.apply(x, d, False)[1],
                      lambda x, d: x.amax(d, keepdim=True)),
    '_CentralSums': (lambda x, g: (x, ),
                     lambda x, d: _CentralSums.apply(
                         x, x.mean(d, keepdim=True).detach(), d),
                     _central_ref),
    '_Pow4Sum': (lambda x, g: (x, ), lambda x, d: _Pow4Sum.apply(x, d),
                 lambda x, d: x.pow(4).sum(d, keepdim=True)),
    '_GatedSumC': (lambda x, g: (x, g),
                   lambda x, g, d: _GatedSumC.apply(x, g),
                   lambda x, g, d: (g * x).sum(1, keepdim=True)),
    '_GatedPow4SumC': (lambda x, g: (x, g),
                       lambda x, g, d: _GatedPow4SumC.apply(x, g),
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
    x, gate = _x().requires_grad_(), _gate().requires_grad_()
    args = inputs(x, gate)
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
    x = _x().requires_grad_()
    for dims, axes in ((C_DIMS, (1, )), (HW_DIMS, (2, 3))):
        g, = torch.autograd.grad(sum_keepdim(x, dims).sum(), x)
        assert all(g.stride(a) == 0 for a in axes), (dims, g.stride())
        mean, _ = _MeanAmax.apply(x, dims, True)
        g, = torch.autograd.grad(mean.sum(), x)
        assert all(g.stride(a) == 0 for a in axes), (dims, g.stride())


# --------------------------------------------- what each squeeze declares
class _Recording(FeatureStats):
    """Records every statistic, and the map, that an operation reads (the
    map only when the operation itself asks: the statistics read it too)."""

    def __init__(self, x):
        super().__init__(x)
        self.seen, self._depth = set(), 0

    @property
    def x(self):
        if not self._depth:
            self.seen.add(MAP)
        return self._x

    def _read(self, method, dims, *kinds):
        self.seen.update(Read(k, tuple(dims)) for k in kinds)
        self._depth += 1
        try:
            return getattr(super(), method)(dims)
        finally:
            self._depth -= 1

    def sum(self, dims):
        return self._read('sum', dims, Sum.kind)

    def amax(self, dims):
        return self._read('amax', dims, Amax.kind)

    def mean_amax(self, dims):
        return self._read('mean_amax', dims, Sum.kind, Amax.kind)

    def pow4_sum(self, dims):
        return self._read('pow4_sum', dims, Pow4Sum.kind)

    def central_sums(self, dims):
        return self._read('central_sums', dims, CentralSums.kind)


SQUEEZES = ([(s.name, n, s.build(n, C, (H, W))) for s in (CHANNEL_SQUEEZE,
                                                           SPATIAL_SQUEEZE)
             for n in s.names] +
            [('extra', f'lp{p}', squeeze.LpPool(d, p=p)) for p in (3, 4)
             for d in (HW_DIMS, C_DIMS)])


@pytest.mark.parametrize('set_name,op,module', SQUEEZES,
                         ids=[f'{s}-{o}' for s, o, _ in SQUEEZES])
def test_squeeze_declares_exactly_what_it_reads(set_name, op, module):
    """``reads()`` is what the forward pass asks of its statistics: the
    fused block's list of what it can run is derived from it."""
    stats = _Recording(_x().float())
    module(None, stats)
    assert module.reads() == frozenset(stats.seen), (set_name, op)
