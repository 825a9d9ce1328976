"""The fused fixed SASE block (``fast/fused/``, ``csrc/sase_fused.cpp``).

SASE (arXiv 2411.08333). When training, the fixed block runs as one autograd
node with a closed-form input gradient, computed by compiled CPU kernels or,
without them, by PyTorch operators. Both must give the generic graph's
output and gradients (x and every parameter) for every genotype the fused
path accepts, keep BatchNorm's running statistics updated once per forward,
and stay exact under double backward and repeated backward. Which genotypes
fuse is derived from what the squeeze operations declare they read, so a
reordered or extended operation set keeps the fused path exact or fails at
import; and each compiled kernel is paired with the Python definition it
restates (:data:`KERNEL_PAIRS`).
"""
import itertools
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from fused_blocks import PAPER, perturbed_sase
from fused_blocks import built_kernels as _kernels

import sase_mm.models.sase.block as block_mod
import sase_mm.models.sase.fast.fused as fused_mod
import sase_mm.models.sase.fast.fused.tape as tape_mod
import sase_mm.models.sase.genotype as genotype_mod
from sase_mm.models.layers.dims import C_DIMS, HW_DIMS
from sase_mm.models.layers.grad_terms import assemble
from sase_mm.models.layers.squeeze import LpPool
from sase_mm.models.layers.stat_formulas import (Amax, CentralSums,
                                                 GatedPow4SumC, GatedSumC,
                                                 Pow4Sum, Sum)
from sase_mm.models.sase import SASE
from sase_mm.models.sase.dag import (residual, residual_factors,
                                     residual_map_grads)
from sase_mm.models.sase.fast.fused import FUSABLE, fusable
from sase_mm.models.sase.fast.fused.dispatch import (COMBINE_SLOTS,
                                                     _combine_slots,
                                                     _kernel_input_grad,
                                                     _rows)
from sase_mm.models.sase.fast.fused.input_grad import _input_grad
from sase_mm.models.sase.space import (CHANNEL_SQUEEZE, EDGES,
                                       SPATIAL_SQUEEZE, OpSet, OpSpec)

COMBOS = list(itertools.product(sorted(FUSABLE[0]), sorted(FUSABLE[3]),
                                 sorted(FUSABLE[4])))


_block = perturbed_sase


def _run(block, x, grad, generic):
    block.zero_grad()
    x = x.detach().clone().requires_grad_()
    out = block.forward_generic(x) if generic else block(x)
    out.backward(grad)
    return out.detach(), x.grad, {n: p.grad.clone()
                                  for n, p in block.named_parameters()}


def _assert_same(block, x, grad, rtol=1e-10, atol=1e-10):
    got = _run(block, x, grad, generic=False)
    want = _run(block, x, grad, generic=True)
    worst = 0.0
    for g, w in zip(got[:2], want[:2]):
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol)
        worst = max(worst, (g - w).abs().max().item())
    for name in want[2]:
        torch.testing.assert_close(got[2][name], want[2][name], rtol=rtol,
                                   atol=atol, msg=name)
    print(f'max |fused - generic| = {worst:.2e}')


def _genotype(e0, e3, e4):
    g = list(PAPER)
    g[0], g[3], g[4] = e0, e3, e4
    return g


@pytest.mark.parametrize('e0,e3,e4', COMBOS)
def test_fused_equals_generic_for_every_fusable_genotype(e0, e3, e4, path,
                                                         device):
    block = _block(_genotype(e0, e3, e4)).to(device)
    assert block.fused
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64, device=device)
    _assert_same(block, x, torch.randn_like(x))


@pytest.mark.parametrize('shape', [(3, 16, 7, 7), (2, 16, 1, 1),
                                   (1, 16, 3, 11), (2, 40, 9, 4)])
def test_paper_block_shapes_ties_and_float32(shape, path, device):
    block = _block(PAPER, c=shape[1]).to(device)
    x = torch.randn(*shape, dtype=torch.float64, device=device)
    # Ties of the spatial maximum: their gradient is shared, as torch.amax.
    x[0, :, 0, 0] = x[0].amax(dim=(1, 2))
    x[-1, 3] = 0.5  # a constant channel: every position ties
    _assert_same(block, x, torch.randn_like(x))
    block32 = block.float()
    _assert_same(block32, x.float(), torch.randn(*shape, device=device),
                 rtol=1e-4,
                 atol=1e-5)


def test_batchnorm_statistics_updated_once(path):
    block = _block(PAPER)
    reference = _block(PAPER)
    x = torch.randn(4, 16, 5, 6, dtype=torch.float64)
    g = torch.randn_like(x)
    _run(block, x, g, generic=False)
    _run(reference, x, g, generic=True)
    for (name, a), b in zip(block.named_buffers(), reference.buffers()):
        torch.testing.assert_close(a, b, msg=name)
    assert int(block.mixer[1].num_batches_tracked) == 1


def test_double_backward_recomputes_exactly(path):
    block = _block(PAPER).train()
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64, requires_grad=True)
    before = [b.clone() for b in block.buffers()]

    def penalty(generic):
        out = block.forward_generic(x) if generic else block(x)
        gx, = torch.autograd.grad(out.square().sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(),
                                   [x] + list(block.parameters()))

    got = penalty(generic=False)
    after_fused = [b.clone() for b in block.buffers()]
    want = penalty(generic=True)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    # The fused forward updated the running stats once; the recomputation
    # for the second derivative did not update them again.
    momentum = block.mixer[1].momentum
    rm0, rm1 = before[0], after_fused[0]
    assert not torch.equal(rm0, rm1)
    batch_mean = (rm1 - (1 - momentum) * rm0) / momentum
    torch.testing.assert_close(
        after_fused[0], (1 - momentum) * rm0 + momentum * batch_mean)
    assert int(after_fused[2]) == int(before[2]) + 1


def test_second_backward_with_retained_graph_matches_first(path):
    block = _block(PAPER)
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64, requires_grad=True)
    out = block(x)
    g = torch.randn_like(out)
    first = torch.autograd.grad(out, [x] + list(block.parameters()), g,
                                retain_graph=True)
    second = torch.autograd.grad(out, [x] + list(block.parameters()), g)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


def test_frozen_parameters_and_input_without_grad(path):
    block = _block(PAPER)
    block.edges[1].requires_grad_(False)  # a frozen FC excitation
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)  # no grad for x
    out = block(x)
    assert out.grad_fn is not None and 'Fused' in type(out.grad_fn).__name__
    out.sum().backward()
    assert all(p.grad is None for p in block.edges[1].parameters())
    assert block.edges[2].weight.grad is not None
    want = {n: p.grad.clone() for n, p in block.named_parameters()
            if p.grad is not None}
    block.zero_grad()
    block.forward_generic(x).sum().backward()
    for n, p in block.named_parameters():
        if n in want:
            torch.testing.assert_close(want[n], p.grad, msg=n)


def test_output_takes_the_residual_add_in_place(path):
    # A ResNet block adds its shortcut in place: ``out += identity``.
    block = _block(PAPER)
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64, requires_grad=True)
    out = block(x)
    out += x
    out.sum().backward()
    want = torch.autograd.grad(block.forward_generic(x) + x, x,
                               torch.ones_like(x))[0]
    torch.testing.assert_close(x.grad, want)


def test_channels_last_input(path):
    block = _block(PAPER)
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    _assert_same(block, x.to(memory_format=torch.channels_last),
                 torch.randn_like(x))


def test_fused_only_when_training_with_gradients():
    block = _block(PAPER)
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        assert block(x).grad_fn is None
    block.requires_grad_(False)
    assert block(x).grad_fn is None  # nothing to differentiate: generic
    assert 'Fused' in type(block(x.requires_grad_()).grad_fn).__name__


def test_which_genotypes_fuse():
    assert fusable(PAPER)
    # Squeezes that need the feature map itself run the generic graph.
    for edge, op in [(0, 'cov_pool'), (4, 'l2_norm'), (4, 'cov_pool'),
                     (3, 'gap_gmp'), (3, 'l2_norm'), (3, 'gap_std')]:
        g = list(PAPER)
        g[edge] = op
        assert not fusable(g)
        assert not SASE(8, genotype=g).fused
    assert not SASE(8, fused=False).fused
    assert 'fused=True' in repr(SASE(8))


@pytest.mark.parametrize('edge', [0, 3, 4])
def test_fusable_table_matches_what_the_tape_supports(edge):
    """Every op of a squeeze edge either runs on the statistics tape or
    raises NotFusable there, exactly as FUSABLE says."""
    for op in EDGES[edge].op_set.names:
        g = list(PAPER)
        g[edge] = op
        block = SASE(8, genotype=g, spatial_size=(4, 4), fused=False)
        block.fused = True  # force the fused path past the table
        x = torch.randn(2, 8, 4, 4, requires_grad=True)
        if op in FUSABLE[edge]:
            block(x).sum().backward()
        else:
            with pytest.raises(fused_mod.NotFusable):
                block(x)


# ------------------------------------------ fusability, derived not listed
EXPECTED_FUSABLE = {
    0: {'gap', 'l2_norm', 'l4_pool', 'gap_gmp', 'gap_std', 'gap_skew'},
    3: {'gap', 'l4_pool'},
    4: {'gap', 'l4_pool', 'gap_gmp', 'gap_std', 'gap_skew'},
}


def test_fusable_is_derived_from_the_squeeze_declarations():
    assert {i: set(ops) for i, ops in FUSABLE.items()} == EXPECTED_FUSABLE
    assert tape_mod.derive_fusable(EDGES) == FUSABLE
    # Which map each squeeze edge reads, as dag.sase_maps wires them.
    assert tape_mod.squeezed_maps() == {0: 'x', 3: 'gated', 4: 'x'}


def _reordered(op_set, extra=()):
    """``op_set`` with its columns reversed, then ``extra`` (name, factory)
    appended."""
    ops = OrderedDict(reversed(list(op_set.ops.items())))
    ops.update((name, OpSpec(name, factory)) for name, factory in extra)
    return OpSet(op_set.name, ops)


def _edges_with(*op_sets):
    swap = {s.name: s for s in op_sets}
    return tuple(e._replace(op_set=swap.get(e.op_set.name, e.op_set))
                 for e in EDGES)


@pytest.fixture
def use_edges(monkeypatch):
    """Builds blocks from other edges: their op sets and the FUSABLE table
    derived from them, as importing with them would."""
    def use(edges):
        derived = tape_mod.derive_fusable(edges)
        monkeypatch.setattr(block_mod, 'EDGES', edges)
        monkeypatch.setattr(genotype_mod, 'EDGES', edges)
        monkeypatch.setattr(tape_mod, 'FUSABLE', derived)
        return derived
    return use


@pytest.mark.parametrize('e0,e3,e4', [('gap_gmp', 'l4_pool', 'gap'),
                                      ('gap_skew', 'gap', 'gap_std'),
                                      ('l2_norm', 'l4_pool', 'gap_gmp')])
def test_reordered_op_sets_keep_the_fused_path_exact(e0, e3, e4, path,
                                                     use_edges):
    cs, ss = _reordered(CHANNEL_SQUEEZE), _reordered(SPATIAL_SQUEEZE)
    assert cs.names == CHANNEL_SQUEEZE.names[::-1]  # alpha columns moved
    assert use_edges(_edges_with(cs, ss)) == FUSABLE
    block = _block(_genotype(e0, e3, e4))
    assert block.fused
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    _assert_same(block, x, torch.randn_like(x))


def test_extended_op_set_fuses_exactly_or_not_at_all(path, use_edges):
    ss = _reordered(SPATIAL_SQUEEZE, extra=[
        ('l3_pool', lambda c, s, **kw: LpPool(C_DIMS, p=3)),
        ('l4_twin', lambda c, s, **kw: LpPool(C_DIMS, p=4))])
    derived = use_edges(_edges_with(ss))
    assert {'l4_twin'} <= derived[3] & derived[4]
    assert 'l3_pool' not in derived[3] | derived[4]
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    block = _block(_genotype('gap_gmp', 'l4_twin', 'l4_twin'))
    assert block.fused
    _assert_same(block, x, torch.randn_like(x))
    slow = _block(_genotype('gap_gmp', 'l3_pool', 'gap'))
    assert not slow.fused
    slow.fused = True  # forced past the derived table: the tape refuses
    with pytest.raises(fused_mod.NotFusable):
        slow(x.requires_grad_())


class _Undeclared(nn.Module):
    """A squeeze that reads a statistic but does not say so."""

    def forward(self, x, stats=None):
        return stats.mean(C_DIMS)


def test_squeeze_without_a_declaration_fails_loudly():
    ss = _reordered(SPATIAL_SQUEEZE,
                    extra=[('undeclared', lambda c, s, **kw: _Undeclared())])
    with pytest.raises(TypeError, match=r"'undeclared'.*_Undeclared.*reads"):
        tape_mod.derive_fusable(_edges_with(ss))


# ----------------------------------- the fused assembly of the closed forms
def _term_cases(x):
    """Every statistic's gradient terms for x (B, C, H, W), by name."""
    b, c, h, w = x.shape
    torch.manual_seed(3)
    gate = torch.rand(b, c, 1, 1, dtype=x.dtype) + 0.5
    row = lambda: torch.randn(b, c, 1, 1, dtype=x.dtype)  # noqa: E731
    col = lambda: torch.randn(b, 1, h, w, dtype=x.dtype)  # noqa: E731
    cases = {}
    for dims, g in ((HW_DIMS, row), (C_DIMS, col)):
        m = Amax.value(x, dims)
        mean = x.mean(dims, keepdim=True)
        s2, _ = CentralSums.value(x, mean, dims)
        n = x.numel() // mean.numel()
        tag = 'hw' if dims == HW_DIMS else 'c'
        cases.update({
            f'sum_{tag}': Sum.input_grad(g()),
            f'amax_{tag}': Amax.input_grad(m, dims, None, g()),
            f'amax_{tag}_ties': Amax.input_grad(m, dims,
                                                Amax.ties(x, m, dims), g()),
            f'pow4_{tag}': Pow4Sum.input_grad(g()),
            f'central_{tag}': CentralSums.input_grad(mean, s2, n, g(), g()),
            f'central_{tag}_s2': CentralSums.input_grad(mean, s2, n, g(),
                                                        None),
        })
    cases['gated_sum'] = GatedSumC.input_grad(gate, col())
    cases['gated_pow4'] = GatedPow4SumC.input_grad(gate.pow(4), col())
    cases['all'] = [t for ts in list(cases.values()) for t in ts]
    return cases


def _x_with_ties(*shape, dtype=torch.float64):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=dtype)
    x[0, 1, 0, 0] = x[0, 1, -1, -1] = x[0, 1].max() + 1  # two maxima
    x[-1, 2] = 0.5  # a constant channel: every position ties
    return x


@pytest.mark.parametrize('case', list(_term_cases(_x_with_ties(2, 4, 3, 5))))
def test_fused_assembly_equals_each_statistics_own(case):
    """``input_grad._input_grad`` (stacked broadcasts, one shared x^3) adds
    exactly what the statistics' own ``assemble`` builds."""
    x = _x_with_ties(2, 4, 3, 5)
    terms = _term_cases(x)[case]
    t = torch.randn_like(x)
    want = t + assemble(terms, x.shape, x)
    got = _input_grad(x, t.clone(), terms)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('case,slot', [
    ('sum_hw', True), ('sum_c', True), ('gated_sum', True),
    ('amax_hw_ties', True), ('gated_pow4', True), ('amax_hw', False),
    ('amax_c_ties', False), ('pow4_hw', False), ('central_c', False)])
def test_which_terms_the_combine_kernel_takes(case, slot):
    x = _x_with_ties(2, 4, 3, 5)
    assert (_combine_slots(_term_cases(x)[case], x) is not None) == slot


# ------------------------------- each compiled kernel and what it restates
def _pair_row_stats(k, x):
    b, c, h, w = x.shape
    m = Amax.value(x, HW_DIMS)
    want = (Sum.value(x, HW_DIMS), m, Amax.ties(x, m, HW_DIMS))
    return k.row_stats(x), (*(t.reshape(b, c) for t in want),
                            Sum.value(x, C_DIMS).reshape(b, h * w))


def _pair_gated_pow4_sum(k, x):
    b, c, h, w = x.shape
    weights = torch.rand(b, c, 1, 1, dtype=x.dtype)
    return (k.gated_pow4_sum(x, weights.view(b, c)),
            GatedPow4SumC.value(x, weights).view(b, h * w))


def _pair_pow4_rowdot(k, x):
    b, c, h, w = x.shape
    v = torch.randn(b, 1, h, w, dtype=x.dtype)
    return (k.pow4_rowdot(x, v.view(b, h * w)),
            GatedPow4SumC.weight_grad(Pow4Sum.pow4(x), v).view(b, c))


def _pair_grad_dots(k, x):
    b, c, h, w = x.shape
    g = torch.randn_like(x)
    _, gs2, gs5 = residual_map_grads(g, x, (b, c, 1, 1), (b, 1, h, w))
    return k.grad_dots(g, x), (gs2.view(b, c), gs5.view(b, h * w))


def _maps(x):
    """Random maps s2 (B, C, 1, 1) and s5 (B, 1, H, W) for x."""
    b, c, h, w = x.shape
    return (torch.randn(b, c, 1, 1, dtype=x.dtype),
            torch.randn(b, 1, h, w, dtype=x.dtype))


def _pair_scale(k, x):
    s2, s5 = _maps(x)
    return k.scale(x, *_rows(s2, s5)), residual(x,
                                                *residual_factors(s2, s5))


def _pair_combine(k, x):
    """The output path plus every kind of term that has a slot, as
    ``dispatch`` maps them, against ``input_grad``'s assembly."""
    g = torch.randn_like(x)
    s2, s5 = _maps(x)
    a, bn = residual_factors(s2, s5)
    cases = _term_cases(x)
    terms = [t for name in ('sum_hw', 'sum_c', 'gated_sum', 'amax_hw_ties',
                            'gated_pow4') for t in cases[name]]
    assert set(_combine_slots(terms, x)) == set(COMBINE_SLOTS)
    got = (_kernel_input_grad(k, g, x, s2, s5, terms),
           _kernel_input_grad(k, g, x, s2, s5, []))
    want = (_input_grad(x, residual(g, a, bn), terms), residual(g, a, bn))
    return got, want


# The excitations' kernels: x (3, 5, 4, 7) read as 3 batches of 5 maps
# (depthwise: 5 kernels, one per map) or of the first map (shared: every
# kernel reads it); kernels of odd sizes, one wider than the map.
_SIZES = ((3, 3), (1, 5), (5, 1), (9, 3), (1, 1))


def _conv_kernels(dtype, sizes=_SIZES):
    torch.manual_seed(1)
    return [torch.randn(1, 1, *s, dtype=dtype) for s in sizes]


def _conv_ref(x, kernels):
    """``map_conv`` as plain ``conv2d`` calls, one per kernel."""
    shared = x.shape[1] == 1
    return torch.cat([
        F.conv2d(x[:, :1] if shared else x[:, j:j + 1], kernel,
                 padding=(kernel.shape[-2] // 2, kernel.shape[-1] // 2))
        for j, kernel in enumerate(kernels)], 1)


def _flat(kernels):
    return torch.cat([t.reshape(-1) for t in kernels])


def _pair_map_conv(k, x):
    ks = _conv_kernels(x.dtype)
    sizes = [n for s in _SIZES for n in s]
    return ((k.map_conv(x, _flat(ks), sizes),
             k.map_conv(x[:, :1].contiguous(), _flat(ks), sizes)),
            (_conv_ref(x, ks), _conv_ref(x[:, :1], ks)))


def _conv_grads(x, g, wrt_x):
    """The kernels' adjoints by autograd through ``_conv_ref``."""
    ks = [t.requires_grad_() for t in _conv_kernels(x.dtype)]
    x = x.clone().requires_grad_()
    got = torch.autograd.grad(_conv_ref(x, ks), [x] + ks, g)
    return got[0] if wrt_x else _flat(got[1:])


def _pair_map_conv_input_grad(k, x):
    ks, g = _conv_kernels(x.dtype), torch.randn_like(x)
    sizes = [n for s in _SIZES for n in s]
    return ((k.map_conv_input_grad(g, _flat(ks), sizes, 5),
             k.map_conv_input_grad(g, _flat(ks), sizes, 1)),
            (_conv_grads(x, g, True), _conv_grads(x[:, :1], g, True)))


def _pair_map_conv_weight_grad(k, x):
    g = torch.randn_like(x)
    sizes = [n for s in _SIZES for n in s]
    x1 = x[:, :1].contiguous()
    return ((k.map_conv_weight_grad(x, g, sizes),
             k.map_conv_weight_grad(x1, g, sizes)),
            (_conv_grads(x, g, False), _conv_grads(x1, g, False)))


_CHAIN = ((3, 3), (5, 3), (1, 7))  # three layers, ReLU between


def _chain_ref(x1, kernels):
    """(gate, outputs of the layers but the last) of a conv chain."""
    y, pre = x1, []
    for i, kernel in enumerate(kernels):
        if i:
            pre.append(y)
        y = _conv_ref(torch.relu(y) if i else y, [kernel])
    return torch.sigmoid(y), torch.cat(pre, 1)


def _pair_chain_gate(k, x):
    ks = _conv_kernels(x.dtype, _CHAIN)
    x1 = x[:, :1].contiguous()
    return (k.chain_gate(x1, _flat(ks), [n for s in _CHAIN for n in s]),
            _chain_ref(x1, ks))


def _pair_chain_gate_backward(k, x):
    ks = [t.requires_grad_() for t in _conv_kernels(x.dtype, _CHAIN)]
    x1 = x[:, :1].clone().requires_grad_()
    g = torch.randn_like(x1)
    sizes = [n for s in _CHAIN for n in s]
    gate, pre = k.chain_gate(x1.detach(), _flat(ks).detach(), sizes)
    got = k.chain_gate_backward(g, x1.detach(), pre, gate,
                                _flat(ks).detach(), sizes, True)
    want = torch.autograd.grad(_chain_ref(x1, ks)[0], [x1] + ks, g)
    return tuple(got), (want[0], _flat(want[1:]))


def _mixer_inputs(x, affine=True):
    torch.manual_seed(2)
    a, b = x[:, :1].contiguous(), x[:, 1:2].contiguous()
    w = torch.randn(2, dtype=x.dtype)
    gamma, beta = ((torch.rand(1, dtype=x.dtype) + 0.5,
                    torch.randn(1, dtype=x.dtype)) if affine else
                   (None, None))
    return a, b, w, gamma, beta


def _mixer_ref(a, b, w, gamma, beta, rm, rv, training):
    """relu(bn(w0 a + w1 b)): SpatialMixer's formula, by F.batch_norm."""
    mix = w[0] * a + w[1] * b
    return torch.relu(F.batch_norm(mix, rm, rv, gamma, beta, training, 0.1,
                                   1e-5))


def _pair_mixer_forward(k, x):
    """Training (batch statistics; the running ones updated, momentum 0.1)
    and evaluation (running statistics), with and without BN affine."""
    got, want = [], []
    for affine, training in ((True, True), (False, True), (True, False)):
        a, b, w, gamma, beta = _mixer_inputs(x, affine)
        rm = torch.randn(1, dtype=x.dtype)
        rv = torch.rand(1, dtype=x.dtype) + 0.5
        rm2, rv2 = rm.clone(), rv.clone()
        out, xhat, invstd = k.mixer_forward(a, b, w, gamma, beta, rm, rv,
                                            training, 0.1, 1e-5)
        got += [out, rm, rv]
        want += [_mixer_ref(a, b, w, gamma, beta, rm2, rv2, training), rm2,
                 rv2]
    return tuple(got), tuple(want)


def _pair_mixer_backward(k, x):
    got, want = [], []
    for affine, training in ((True, True), (False, True), (True, False)):
        a, b, w, gamma, beta = _mixer_inputs(x, affine)
        rm = torch.randn(1, dtype=x.dtype)
        rv = torch.rand(1, dtype=x.dtype) + 0.5
        g = torch.randn_like(a)
        out, xhat, invstd = k.mixer_forward(a, b, w, gamma, beta, rm.clone(),
                                            rv.clone(), training, 0.1, 1e-5)
        ga, gb, gw, gg, gbt = k.mixer_backward(g, a, b, w, gamma, xhat, out,
                                               invstd, training)
        leaves = [t.clone().requires_grad_() for t in (a, b, w)]
        params = ([t.clone().requires_grad_() for t in (gamma, beta)]
                  if affine else [])
        ref = _mixer_ref(*leaves, *(params or (None, None)), rm, rv,
                         training)
        got += [ga, gb, gw] + ([gg, gbt] if affine else [])
        want += list(torch.autograd.grad(ref, leaves + params, g))
    return tuple(got), tuple(want)


#: kernel -> a function (kernels, x) -> (kernel's outputs, the outputs of the
#: Python definition it restates):
#:   row_stats       Sum.value, Amax.value, Amax.ties over H, W; Sum over C
#:   gated_pow4_sum  GatedPow4SumC.value
#:   pow4_rowdot     GatedPow4SumC.weight_grad
#:   grad_dots       dag.residual_map_grads
#:   scale           dag.residual of dag.residual_factors
#:   combine         dag.residual + input_grad._input_grad of the terms
#:   map_conv, map_conv_input_grad, map_conv_weight_grad
#:                   conv2d per kernel, and its gradients
#:   chain_gate, chain_gate_backward
#:                   conv2d, ReLU, ..., sigmoid, and its gradients
#:   mixer_forward, mixer_backward
#:                   relu(F.batch_norm(w0 a + w1 b)), and its gradients
KERNEL_PAIRS = {
    'row_stats': _pair_row_stats,
    'gated_pow4_sum': _pair_gated_pow4_sum,
    'pow4_rowdot': _pair_pow4_rowdot,
    'grad_dots': _pair_grad_dots,
    'scale': _pair_scale,
    'combine': _pair_combine,
    'map_conv': _pair_map_conv,
    'map_conv_input_grad': _pair_map_conv_input_grad,
    'map_conv_weight_grad': _pair_map_conv_weight_grad,
    'chain_gate': _pair_chain_gate,
    'chain_gate_backward': _pair_chain_gate_backward,
    'mixer_forward': _pair_mixer_forward,
    'mixer_backward': _pair_mixer_backward,
}


def test_every_kernel_is_paired():
    k = _kernels()
    assert {n for n in dir(k) if not n.startswith('_')} == set(KERNEL_PAIRS)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('kernel', list(KERNEL_PAIRS))
def test_kernel_equals_the_python_definition(kernel, dtype):
    k = _kernels()
    x = _x_with_ties(3, 5, 4, 7, dtype=dtype)
    got, want = KERNEL_PAIRS[kernel](k, x)
    got, want = ((t, ) if torch.is_tensor(t) else t for t in (got, want))
    assert len(got) == len(want)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        torch.testing.assert_close(
            g, w, rtol=tol, atol=tol * max(1.0, w.abs().max().item()))
    if kernel == 'row_stats':  # max and ties are exact, not rounded
        assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])
        assert got[2][0, 1] == 2 and got[2][2, 2] == 28


def test_kernel_row_stats_nan_and_layout():
    k = _kernels()
    nan = torch.randn(1, 2, 3, 3)
    nan[0, 0, 1, 1] = float('nan')
    assert torch.isnan(k.row_stats(nan)[1][0, 0])  # as amax: NaN propagates
    assert not torch.isnan(k.row_stats(nan)[1][0, 1])
    with pytest.raises(RuntimeError, match='contiguous'):
        k.row_stats(torch.randn(2, 3, 4, 4).transpose(2, 3))
