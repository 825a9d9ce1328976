"""The batched excitation edges equal their operations run one by one.

SASE (arXiv 2411.08333), DARTS (Liu et al., ICLR 2019): a search edge mixes
``sum_o mix_o op_o(x)`` (docs/spec.md section 3). ``fast/batched_edges.py``
evaluates the two excitation sets (docs/spec.md sections 2.3, 2.4) as a few
stacked products, planned from the operations themselves; on larger maps
as convolutions of 1-channel maps planned alike (``map_conv``: compiled
kernels on CPU, padded ``conv2d`` elsewhere). Here, for the declared order
and for permuted and extended sets, on maps below, between and above the
dense cut-offs (odd sizes), for each large-map form, in float64: outputs,
gradients (input, mix, every parameter) and second derivatives equal the
one-by-one loop; and a set holding an operation without a batched form is
refused.
"""
import pickle
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
from fused_blocks import built_kernels

import sase_mm.models.sase.fast.map_conv as map_conv_mod
from sase_mm.models.layers.excitation import Conv1dChain, SpatialConv
from sase_mm.models.layers.squeeze import MeanPool
from sase_mm.models.sase.fast import batched_edges as be
from sase_mm.models.sase.space import (CHANNEL_EXCITATION, CHANNEL_SQUEEZE,
                                       OP_SETS, SPATIAL_EXCITATION, OpSet,
                                       OpSpec)

B = 3


def _reorder(op_set, order):
    return OpSet(op_set.name,
                 OrderedDict((n, op_set.ops[n]) for n in order(op_set.names)))


def _extend(op_set, *entries):
    ops = OrderedDict(op_set.ops)
    for name, factory in entries:
        ops[name] = OpSpec(name, factory)
    return OpSet(op_set.name, ops)


ORDERS = {
    'declared': lambda names: names,
    'reversed': lambda names: names[::-1],
    'rotated': lambda names: names[3:] + names[:3],
    'interleaved': lambda names: names[::2] + names[1::2],
}


def _channel_sets():
    sets = {k: _reorder(CHANNEL_EXCITATION, f) for k, f in ORDERS.items()}
    # Two more chains, one deeper than any declared (a fourth layer), and
    # a second FC, all in front of the declared ones.
    sets['extended'] = _reorder(
        _extend(CHANNEL_EXCITATION,
                ('k9_x4', lambda c, s, **kw: Conv1dChain(9, 4)),
                ('k1', lambda c, s, **kw: Conv1dChain(1)),
                ('fc2', CHANNEL_EXCITATION.ops['fc'].factory)),
        lambda names: names[-3:] + names[:-3])
    return sets


def _spatial_sets():
    sets = {k: _reorder(SPATIAL_EXCITATION, f) for k, f in ORDERS.items()}
    sets['extended'] = _reorder(
        _extend(
            SPATIAL_EXCITATION,
            # Folds into one 3 x 5 kernel; a 1x3-1x1-3x1 chain folds too.
            ('sep_3x5', lambda c, s, **kw: SpatialConv([(3, 1), (1, 5)],
                                                       relu_between=False)),
            ('sep_3_mid', lambda c, s, **kw: SpatialConv(
                [(1, 3), (1, 1), (3, 1)], relu_between=False)),
            ('x3', lambda c, s, **kw: SpatialConv([(3, 3), (1, 5), (5, 1)])),
            ('affine2', SPATIAL_EXCITATION.ops['affine'].factory)),
        lambda names: names[::-1])
    return sets


CHANNEL_SETS = _channel_sets()
SPATIAL_SETS = _spatial_sets()


def _build(op_set, channels, spatial_size, **options):
    ops = [op_set.build(n, channels, spatial_size, **options).double()
           for n in op_set.names]
    with torch.no_grad():  # off the init, so affine and sigmoids are generic
        for op in ops:
            for p in op.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return ops


def _naive(ops, x, mix):
    return sum(w * op(x) for w, op in zip(mix, ops))


def _count_forwards(ops):
    calls = []
    for op in ops:
        op.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.fixture(params=['kernels', 'conv2d', 'one_by_one'])
def large(request, monkeypatch):
    """How maps above the dense cut-offs run: the compiled ``map_conv``
    kernels (CPU), padded ``conv2d`` (as on a GPU), or one operation at a
    time (CPU without the kernels)."""
    if request.param == 'kernels':
        built_kernels()
    else:
        monkeypatch.setattr(map_conv_mod, 'fused_kernels', lambda: None)
        if request.param == 'conv2d':
            monkeypatch.setattr(be, 'large_maps_batched', lambda x: True)
    return request.param


def _dense_limit(form, op_set):
    limit = be.BATCHED_SETS[op_set.name].max_dense
    return (min(limit, be.MAX_DENSE_WITH_KERNELS) if form == 'kernels'
            else limit)


def _check_matches(op_set, ops, x, n, form, monkeypatch):
    mix = torch.randn(len(ops), dtype=torch.float64,
                      device=x.device).softmax(0)
    mix.requires_grad_(True)
    x.requires_grad_(True)
    evaluate = be.batched_mixture(op_set.name, ops)
    assert evaluate is not None
    calls = _count_forwards(ops)
    products = []
    conv_matrix = be.conv_matrix
    monkeypatch.setattr(be, 'conv_matrix',
                        lambda *a, **k: products.append(1) or conv_matrix(
                            *a, **k))
    y = evaluate(ops, x, mix)
    dense = n <= _dense_limit(form, op_set)
    # Up to the cut-off the convolutions are matrix products; above it
    # map_conv's, or, without a batched large-map form, every operation
    # runs alone.
    assert bool(products) == dense
    assert len(calls) == (len(ops) if not dense and form == 'one_by_one'
                          else 0)
    y_ref = _naive(ops, x, mix)
    assert y.shape == x.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)

    params = [p for op in ops for p in op.parameters()]
    g = torch.randn_like(y)
    # allow_unused=False: every parameter reaches the batched output.
    grads = torch.autograd.grad(y, [x, mix] + params, g)
    grads_ref = torch.autograd.grad(y_ref, [x, mix] + params, g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('fc_sigmoid', [False, True], ids=['fc', 'fc_sig'])
@pytest.mark.parametrize('channels', [16, 129, be.MAX_DENSE_CHANNELS + 44])
@pytest.mark.parametrize('order', list(CHANNEL_SETS))
def test_channel_excitation_matches_one_by_one(order, channels, fc_sigmoid,
                                               large, monkeypatch):
    op_set = CHANNEL_SETS[order]
    ops = _build(op_set, channels, None, fc_sigmoid=fc_sigmoid)
    x = torch.randn(B, channels, 1, 1, dtype=torch.float64)
    _check_matches(op_set, ops, x, channels, large, monkeypatch)


@pytest.mark.parametrize('hw,built', [((5, 6), (5, 6)), ((7, 5), (4, 4)),
                                      ((1, 1), (4, 4)), ((9, 13), (8, 8)),
                                      ((16, 16), (8, 8)), ((17, 16), (8, 8)),
                                      ((11, 25), (11, 25))], ids=str)
@pytest.mark.parametrize('order', list(SPATIAL_SETS))
def test_spatial_excitation_matches_one_by_one(order, hw, built, large,
                                               monkeypatch):
    # ``built`` != hw: the affine's per-position parameters are resized.
    op_set = SPATIAL_SETS[order]
    ops = _build(op_set, 8, built)
    x = torch.randn(B, 1, *hw, dtype=torch.float64)
    _check_matches(op_set, ops, x, hw[0] * hw[1], large, monkeypatch)


@pytest.mark.parametrize('shape', [(B, 12, 1, 1), (B, 1, 5, 4),
                                   (B, 1, 17, 19)], ids=str)
def test_batched_edges_on_the_device(shape, device):
    # The dense products (and, on a GPU, the padded conv2d form above the
    # cut-offs) where the tests run.
    op_set = CHANNEL_EXCITATION if shape[1] > 1 else SPATIAL_EXCITATION
    ops = [op.to(device) for op in _build(op_set, shape[1], shape[-2:])]
    x = torch.randn(shape, dtype=torch.float64, device=device)
    mix = torch.randn(len(ops), dtype=torch.float64, device=device)
    torch.testing.assert_close(
        be.batched_mixture(op_set.name, ops)(ops, x, mix.softmax(0)),
        _naive(ops, x, mix.softmax(0)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('op_set,shape', [
    *[(s, (B, 12, 1, 1)) for s in CHANNEL_SETS.values()],
    *[(s, (B, 1, 5, 4)) for s in SPATIAL_SETS.values()],
    (CHANNEL_SETS['extended'], (2, 131, 1, 1)),
    (SPATIAL_SETS['extended'], (2, 1, 11, 13)),
], ids=[f'channel-{k}' for k in CHANNEL_SETS] +
                         [f'spatial-{k}' for k in SPATIAL_SETS] +
                         ['channel-extended-large', 'spatial-extended-large'])
def test_second_derivatives_match(op_set, shape, large):
    # DARTS's second-order alpha step differentiates a gradient.
    ops = _build(op_set, shape[1], shape[-2:])
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    mix = torch.randn(len(ops), dtype=torch.float64,
                      device=x.device).softmax(0)
    mix.requires_grad_(True)
    params = [p for op in ops for p in op.parameters()]
    g, v = torch.randn(shape, dtype=torch.float64), torch.randn(
        shape, dtype=torch.float64)
    evaluate = be.batched_mixture(op_set.name, ops)

    def second(y):
        (gx, ) = torch.autograd.grad(y, [x], g, create_graph=True)
        return torch.autograd.grad((gx * v).sum(), [x, mix] + params,
                                   allow_unused=True)

    got, ref = second(evaluate(ops, x, mix)), second(_naive(ops, x, mix))
    for a, b in zip(got, ref):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('order', list(ORDERS))
def test_declared_check_accepts_reordered_sets(order):
    sets = dict(OP_SETS)
    for name in ('channel_excitation', 'spatial_excitation'):
        sets[name] = _reorder(OP_SETS[name], ORDERS[order])
    plans = be.check_declared_sets(sets)
    for name, plan in plans.items():
        # Every column is mixed exactly once, gated or plain.
        columns = plan.gate_columns + tuple(p.columns[0] for p in plan.plain)
        assert sorted(columns) == list(range(len(sets[name])))


def test_declared_plans_keep_the_operator_count():
    # One product per conv layer (channel: 3 layers; spatial: 2, the
    # separable pairs folded), and no gather of ``mix`` for the spatial set.
    channel = be.DECLARED_PLANS['channel_excitation']
    spatial = be.DECLARED_PLANS['spatial_excitation']
    assert len(channel.bounds) == 3 and len(spatial.bounds) == 2
    assert [c.fold for c in spatial.chains].count(True) == 2
    assert not spatial.gather and channel.gather
    assert len(spatial.pieces) == 3 and len(channel.pieces) == 4


def _with(set_name, *entries):
    sets = dict(OP_SETS)
    sets[set_name] = _extend(OP_SETS[set_name], *entries)
    return sets


@pytest.mark.parametrize('sets,match', [
    (_with('channel_excitation',
           ('gap', lambda c, s, **kw: MeanPool((2, 3)))), 'MeanPool'),
    (_with('channel_excitation',
           ('k4', lambda c, s, **kw: Conv1dChain(4))), 'odd kernel'),
    (_with('channel_excitation',
           ('empty', lambda c, s, **kw: Conv1dChain(3, depth=0))),
     'odd kernel'),
    (_with('spatial_excitation',
           ('linear_3x3_x2', lambda c, s, **kw: SpatialConv(
               [(3, 3), (3, 3)], relu_between=False))), 'not one conv'),
    (_with('spatial_excitation',
           ('fc', CHANNEL_EXCITATION.ops['fc'].factory)), 'FCExcitation'),
    (_with('spatial_excitation',
           ('subclass', lambda c, s, **kw: type('MySpatialConv', (
               SpatialConv, ), {})([(3, 3)]))), 'MySpatialConv'),
    ({k: v for k, v in OP_SETS.items() if k != 'spatial_excitation'},
     'not a declared operation set'),
], ids=['squeeze', 'even_kernel', 'empty_chain', 'linear_3x3_x2',
        'fc_in_spatial', 'subclass', 'set_missing'])
def test_declared_check_refuses_unsupported_ops(sets, match):
    with pytest.raises(be.NotBatchable, match=match):
        be.check_declared_sets(sets)


def test_batched_mixture_refuses_and_declines():
    ops = [CHANNEL_EXCITATION.build(n, 16) for n in CHANNEL_EXCITATION.names]
    with pytest.raises(be.NotBatchable, match=r"operation 7 .*Identity"):
        be.batched_mixture('channel_excitation', ops + [nn.Identity()])
    # Sets without a batched evaluator run one by one.
    squeezes = [CHANNEL_SQUEEZE.build(n, 16) for n in CHANNEL_SQUEEZE.names]
    assert be.batched_mixture('channel_squeeze', squeezes) is None


def test_evaluator_is_data_and_pickles():
    # MixedOp keeps the evaluator: it must hold no module and survive
    # pickling (and deepcopy) with the model.
    ops = [SPATIAL_EXCITATION.build(n, 8, 4) for n in SPATIAL_EXCITATION.names]
    evaluate = be.batched_mixture('spatial_excitation', ops)
    clone = pickle.loads(pickle.dumps(evaluate))
    x, mix = torch.randn(B, 1, 4, 4), torch.randn(7).softmax(0)
    torch.testing.assert_close(clone(ops, x, mix), evaluate(ops, x, mix))
    assert not any(isinstance(a, nn.Module) for a in evaluate.args[0])
