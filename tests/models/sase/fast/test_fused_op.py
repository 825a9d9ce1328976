"""The fused SASE block as an operator (``fast/fused/op.py``).

SASE (arXiv 2411.08333). Under ``torch.compile`` and ``torch.export`` the
fixed block is one call of ``sase_mm::fused_sase`` (its backward one call of
``sase_mm::fused_sase_backward``). Checked here: ``torch.library.opcheck``
of both operators (schema, fake implementation, autograd registration, AOT
dispatch with dynamic shapes); the operator's output, the gradients of x
and of every parameter and the BN running statistics (updated once) against
the generic graph; compiled graphs (static and dynamic shapes, three input
sizes) that hold the operators and nothing of the generic graph, with no
graph break; exported programs, also run where the block is gone;
channels_last inputs; bfloat16 autocast. Compile uses ``aot_eager`` (dynamo,
AOT autograd, fake tensors) to stay fast; the inductor case is
``tests/models/sase/test_compile.py``.
"""
import io
from weakref import WeakValueDictionary

import pytest
import torch
import torch._dynamo
from fused_blocks import PAPER, perturbed_sase
import torch._dynamo.testing
from torch._dynamo.backends.common import aot_autograd

import sase_mm.models.sase.fast.fused.op as op_mod
from sase_mm.models.sase import SASE
from sase_mm.models.sase.fast.fused import fusable
from sase_mm.models.sase.fast.fused.op import fused_sase_op, op_key

# Another fusable block: other squeezes on the three squeeze edges (central
# moments, the gated mean) and other excitations.
OTHER = ['gap_skew', 'conv1d_k3', 'fc', 'gap', 'gap_std', 'sep_conv_3']
GENOTYPES = {'paper': PAPER, 'other': OTHER}
SHAPES = ((14, 14), (10, 12), (9, 7))
FWD = torch.ops.sase_mm.fused_sase
BWD = torch.ops.sase_mm.fused_sase_backward


_block = perturbed_sase


def _run(block, fn, x, grad):
    """(output, dL/dx, {name: dL/dparam}, buffers after) of one step."""
    block.zero_grad()
    x = x.detach().clone().requires_grad_()
    out = fn(x)
    out.backward(grad)
    return (out.detach(), x.grad,
            {n: p.grad.clone() for n, p in block.named_parameters()},
            [b.clone() for b in block.buffers()])


def _assert_steps_equal(got, want, rtol, atol):
    torch.testing.assert_close(got[0], want[0], rtol=rtol, atol=atol)
    torch.testing.assert_close(got[1], want[1], rtol=rtol, atol=atol)
    assert got[2].keys() == want[2].keys()
    for name in want[2]:
        torch.testing.assert_close(got[2][name], want[2][name], rtol=rtol,
                                   atol=atol, msg=name)
    for a, b in zip(got[3], want[3]):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def _twice(block, fn_a, fn_b, x, grad):
    """One step of each, from the same BN statistics."""
    state = {k: v.clone() for k, v in block.state_dict().items()}
    a = _run(block, fn_a, x, grad)
    block.load_state_dict(state)
    b = _run(block, fn_b, x, grad)
    return a, b


def _op_targets(graph):
    """Called functions of an FX graph (or graph module)."""
    graph = getattr(graph, 'graph', graph)
    return [n.target for n in graph.nodes if n.op == 'call_function']


def _is(target, op):
    return target is op or target is getattr(op, 'default', None)


# ------------------------------------------------------------------ opcheck
@pytest.mark.parametrize('training', [True, False])
@pytest.mark.parametrize('shape,layout', [
    ((2, 8, 5, 6), torch.contiguous_format),
    ((3, 8, 4, 9), torch.contiguous_format),
    ((2, 8, 3, 7), torch.channels_last)])
@pytest.mark.parametrize('name', list(GENOTYPES))
def test_opcheck_forward_and_backward_operators(name, shape, layout,
                                                training):
    assert fusable(GENOTYPES[name])
    block = _block(GENOTYPES[name], c=shape[1], dtype=torch.float32)
    block.train(training)
    key = op_key(block)
    x = torch.randn(*shape).to(memory_format=layout).requires_grad_()
    params, buffers = list(block.parameters()), list(block.buffers())
    fwd = torch.library.opcheck(FWD.default,
                                (x, params, buffers, key, training))
    needs = [True] + [i % 3 != 1 for i in range(len(params))]  # some frozen
    bwd = torch.library.opcheck(BWD.default, (
        torch.randn(*shape), x.detach(), [p.detach() for p in params],
        buffers, key, training, needs))
    for result in (fwd, bwd):
        assert set(result.values()) == {'SUCCESS'}, result
    # opcheck ran the operator many times: it never wrote its arguments.
    assert int(block.mixer[1].num_batches_tracked) == 0


def test_backward_operator_returns_what_needs_asks_for():
    block = _block(dtype=torch.float32)
    x = torch.randn(2, 16, 5, 6)
    params = [p.detach() for p in block.parameters()]
    needs = [False] + [i in (0, 3) for i in range(len(params))]
    got = BWD(torch.randn_like(x), x, params, list(block.buffers()),
              op_key(block), True, needs)
    assert [g.shape for g in got] == [params[0].shape, params[3].shape]


# ------------------------------------------- eager operator == generic graph
@pytest.mark.parametrize('name', list(GENOTYPES))
def test_operator_equals_generic_graph(name, path, device):
    block = _block(GENOTYPES[name]).to(device)
    x = torch.randn(3, 16, 5, 6, dtype=torch.float64, device=device)
    got, want = _twice(block, lambda x: fused_sase_op(block, x),
                       block.forward_generic, x, torch.randn_like(x))
    _assert_steps_equal(got, want, rtol=1e-10, atol=1e-10)


def test_running_statistics_updated_once_per_forward(path):
    block = _block()
    before = [b.clone() for b in block.buffers()]
    x = torch.randn(4, 16, 5, 6, dtype=torch.float64)
    got, want = _twice(block, lambda x: fused_sase_op(block, x),
                       block.forward_generic, x, torch.randn_like(x))
    assert int(got[3][2]) == int(before[2]) + 1  # num_batches_tracked
    assert not torch.equal(got[3][0], before[0])  # the mean moved ...
    torch.testing.assert_close(got[3][0], want[3][0])  # ... as generic's
    torch.testing.assert_close(got[3][1], want[3][1])
    # Eval mode: the running statistics are read, never written.
    block.eval()
    after = [b.clone() for b in block.buffers()]
    _run(block, lambda x: fused_sase_op(block, x), x, torch.randn_like(x))
    for a, b in zip(block.buffers(), after):
        assert torch.equal(a, b)


def test_frozen_parameters_and_input_without_grad():
    block = _block()
    block.edges[1].requires_grad_(False)
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)  # no grad for x
    fused_sase_op(block, x).sum().backward()  # an expanded output gradient
    assert all(p.grad is None for p in block.edges[1].parameters())
    got = {n: p.grad.clone() for n, p in block.named_parameters()
           if p.grad is not None}
    block.zero_grad()
    block.forward_generic(x).sum().backward()
    assert got.keys() == {n for n, p in block.named_parameters()
                          if p.grad is not None}
    for n, g in got.items():
        torch.testing.assert_close(g, dict(block.named_parameters())[n].grad)


def test_double_backward_through_the_operator_is_exact():
    block = _block().train()
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64, requires_grad=True)
    state = {k: v.clone() for k, v in block.state_dict().items()}

    def penalty(fn):
        gx, = torch.autograd.grad(fn(x).square().sum(), x,
                                  create_graph=True)
        return torch.autograd.grad(gx.square().sum(),
                                   [x] + list(block.parameters()))

    got = penalty(lambda x: fused_sase_op(block, x))
    assert int(block.mixer[1].num_batches_tracked) == 1  # once, not twice
    block.load_state_dict(state)
    want = penalty(block.forward_generic)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


# ---------------------------------------------------------- torch.compile
def _capturing_backend():
    """aot_eager that keeps the dynamo, forward and backward graphs."""
    graphs = {'dynamo': [], 'fw': [], 'bw': []}

    def keep(kind):
        def compiler(gm, example_inputs):
            graphs[kind].append(gm.graph)
            return gm
        return compiler

    aot = aot_autograd(fw_compiler=keep('fw'), bw_compiler=keep('bw'))

    def backend(gm, example_inputs):
        graphs['dynamo'].append(gm.graph)
        return aot(gm, example_inputs)

    return backend, graphs


def _generic_ops(targets):
    """The generic graph's convolutions and reductions among ``targets``."""
    names = ('conv', 'amax', 'batch_norm', 'mean', 'sum')
    return [t for t in targets if any(n in str(t) for n in names)]


@pytest.mark.parametrize('dynamic', [False, True])
def test_compile_runs_one_operator_without_graph_break(dynamic, device):
    torch._dynamo.reset()
    block = _block(dtype=torch.float32).to(device)
    backend, graphs = _capturing_backend()
    compiled = torch.compile(block, backend=backend, dynamic=dynamic,
                             fullgraph=True)  # a graph break would raise
    for h, w in SHAPES:
        x = torch.randn(2, 16, h, w, device=device)
        got, want = _twice(block, compiled, block, x, torch.randn_like(x))
        _assert_steps_equal(got, want, rtol=1e-5, atol=1e-5)
    assert graphs['dynamo'] and graphs['bw']
    if dynamic:  # one graph serves several sizes
        assert len(graphs['dynamo']) < len(SHAPES)
    for kind, op in (('dynamo', FWD), ('fw', FWD), ('bw', BWD)):
        for graph in graphs[kind]:
            targets = _op_targets(graph)
            assert sum(_is(t, op) for t in targets) == 1, (kind, targets)
            assert not _generic_ops(targets), (kind, targets)
    explained = torch._dynamo.explain(block)(torch.randn(2, 16, 6, 5,
                                                         device=device))
    assert explained.graph_break_count == 0
    assert explained.graph_count == 1


def test_compile_in_eval_mode_and_without_gradients():
    torch._dynamo.reset()
    block = _block(dtype=torch.float32).eval()
    counter = torch._dynamo.testing.CompileCounterWithBackend('aot_eager')
    compiled = torch.compile(block, backend=counter, fullgraph=True)
    x = torch.randn(2, 16, 7, 5)
    torch.testing.assert_close(compiled(x), block(x))
    assert any(_is(t, FWD) for t in _op_targets(counter.graphs[-1]))
    with torch.no_grad():  # inference: the generic graph, for the compiler
        torch.testing.assert_close(compiled(x), block(x))
    targets = _op_targets(counter.graphs[-1])
    assert not any(_is(t, FWD) for t in targets) and _generic_ops(targets)


# ------------------------------------------------------------ torch.export
@pytest.mark.parametrize('strict', [False, True])
@pytest.mark.parametrize('training', [True, False])
def test_export_holds_the_operator(training, strict):
    block = _block(dtype=torch.float32).train(training)
    height = torch.export.Dim('height', min=2, max=64)
    program = torch.export.export(block, (torch.randn(2, 16, 6, 5), ),
                                  strict=strict,
                                  dynamic_shapes=({2: height}, ))
    targets = _op_targets(program.graph)
    assert sum(_is(t, FWD) for t in targets) == 1, targets
    assert not _generic_ops(targets), targets
    x = torch.randn(2, 16, 9, 5)  # another height
    state = {k: v.clone() for k, v in block.state_dict().items()}
    want = block(x)
    want_buffers = [b.clone() for b in block.buffers()]
    block.load_state_dict(state)
    torch.testing.assert_close(program.module()(x), want)
    for a, b in zip(block.buffers(), want_buffers):  # train: updated once
        torch.testing.assert_close(a, b)


def test_exported_program_runs_where_the_block_is_gone(monkeypatch):
    """A saved and reloaded program whose block is not alive (as in another
    process) rebuilds it from the block configuration in the key."""
    block = _block(OTHER, dtype=torch.float32, fc_sigmoid=True).eval()
    x = torch.randn(2, 16, 5, 6)
    buf = io.BytesIO()
    torch.export.save(torch.export.export(block, (x, )), buf)
    want = block(x)
    monkeypatch.setattr(op_mod, '_BLOCKS', WeakValueDictionary())
    monkeypatch.setattr(op_mod, '_TEMPLATES', {})
    buf.seek(0)
    got = torch.export.load(buf).module()(x)
    assert len(op_mod._TEMPLATES) == 1  # it was rebuilt, not looked up
    torch.testing.assert_close(got, want)


def test_key_without_block_or_config_fails_clearly():
    block = _block(dtype=torch.float32)
    with pytest.raises(RuntimeError, match='no live block'):
        FWD(torch.randn(2, 16, 5, 6), list(block.parameters()),
            list(block.buffers()), '#0', False)


def test_key_is_the_block_type_and_its_own_config():
    """The key holds what ``SASE.op_config`` returns, under the block's
    registered type name, and ``SASE.from_op_config`` rebuilds from it a
    block of the same configuration."""
    import json
    block = SASE(8, genotype=OTHER, spatial_size=(5, 6), fc_sigmoid=True)
    key = op_key(block)
    name, _, rest = key.partition(':')
    text = rest.rpartition('#')[0]
    assert name == 'SASE' and op_mod._BLOCK_TYPES['SASE'] is SASE
    assert json.loads(text) == block.op_config() == dict(
        in_channels=8, genotype=OTHER, spatial_size=[5, 6], fc_sigmoid=True)
    again = SASE.from_op_config(text)
    assert again.op_config() == block.op_config()
    assert [k for k in again.state_dict()] == [k for k in block.state_dict()]


def test_the_operator_imports_no_block():
    """The block registers itself with the operator; the operator module
    imports nothing of the block's (no import circle)."""
    import ast
    tree = ast.parse(open(op_mod.__file__).read())
    names = [n.module or '' for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom)]
    names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
              for a in n.names]
    assert not [n for n in names if 'block' in n or n.endswith('sase')], \
        names


def test_register_block_checks_the_class():
    class NoConfig(torch.nn.Module):
        pass

    with pytest.raises(TypeError, match='op_config'):
        op_mod.register_block(NoConfig)

    # Another class under a registered name.
    impostor = type('SASE', (torch.nn.Module, ), dict(
        op_config=lambda self: {},
        from_op_config=classmethod(lambda cls, text: cls())))
    with pytest.raises(TypeError, match='registered already'):
        op_mod.register_block(impostor)
    assert op_mod._BLOCK_TYPES['SASE'] is SASE


_FIELDS = '"genotype": [], "spatial_size": [5, 6], "fc_sigmoid": false'


@pytest.mark.parametrize('config,match', [
    ('SASE:not json', 'not JSON'),
    ('SASE:[1, 2]', 'exactly the fields'),
    ('SASE:{"in_channels": 16}', 'exactly the fields'),
    # a genotype string would be read as a path: refused before SASE sees it
    ('SASE:{"in_channels": 16, "genotype": "/etc/passwd", '
     '"spatial_size": [5, 6], "fc_sigmoid": false}',
     'genotype must be a list of operation names'),
    ('SASE:{"in_channels": true, ' + _FIELDS + '}',
     'in_channels must be a positive int'),
    ('SASE:{"in_channels": 16, "genotype": [], "spatial_size": [5],'
     ' "fc_sigmoid": false}', r'spatial_size must be \[H, W\]'),
    ('SASE:{"in_channels": 16, "genotype": [], "spatial_size": [5, 6],'
     ' "fc_sigmoid": 1}', 'fc_sigmoid must be true or false'),
    ('SASE:{"in_channels": 16, ' + _FIELDS + ', "extra": 1}',
     'exactly the fields'),
    # a type that did not register (no constructor is looked up by name)
    ('os.system:{"in_channels": 16, ' + _FIELDS + '}', 'not registered'),
    ('{"in_channels": 16, ' + _FIELDS + '}', 'not registered'),
])
def test_crafted_key_of_an_exported_program_is_refused(config, match,
                                                       monkeypatch):
    """A key whose block is gone comes from a file (an exported program):
    its block type must be registered, and its configuration is checked
    (``SASE.from_op_config``) before a block is built."""
    monkeypatch.setattr(op_mod, '_TEMPLATES', {})
    block = _block(dtype=torch.float32)
    with pytest.raises(ValueError, match=match):
        FWD(torch.randn(2, 16, 5, 6), list(block.parameters()),
            list(block.buffers()), config + '#0', False)
    assert not op_mod._TEMPLATES


def test_op_key_is_marked_as_torch_compiler_would():
    """``op_key`` sets dynamo's constant-result mark itself (the public
    decorator imports torch._dynamo); it must be the decorator's mark."""
    def probe():
        return 'key'

    torch.compiler.assume_constant_result(probe)
    assert vars(probe) == {'_dynamo_marked_constant': True}
    assert op_key._dynamo_marked_constant is True
    block = SASE(8)
    assert op_mod._block_of(op_key(block)) is block  # registered, live


# ------------------------------------------- channels_last and mixed precision
def test_channels_last_input(path):
    block = _block()
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    grad = torch.randn_like(x)
    op = lambda x: fused_sase_op(block, x)  # noqa: E731
    last, plain = _twice(block, op, op,
                         x.to(memory_format=torch.channels_last), grad)
    _assert_steps_equal(last, plain, rtol=1e-12, atol=1e-12)
    out = fused_sase_op(block, x.to(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_under_compile():
    torch._dynamo.reset()
    block = _block(dtype=torch.float32)
    counter = torch._dynamo.testing.CompileCounterWithBackend('aot_eager')
    compiled = torch.compile(block, backend=counter, fullgraph=True)
    x = torch.randn(2, 16, 6, 5)
    grad = torch.randn_like(x)
    last, plain = _twice(block, compiled, block,
                         x.to(memory_format=torch.channels_last), grad)
    _assert_steps_equal(last, plain, rtol=1e-5, atol=1e-5)
    assert any(_is(t, FWD) for t in _op_targets(counter.graphs[-1]))


def test_bfloat16_autocast_reaches_the_operator():
    torch._dynamo.reset()
    block = _block(dtype=torch.float32)
    counter = torch._dynamo.testing.CompileCounterWithBackend('aot_eager')
    compiled = torch.compile(block, backend=counter, fullgraph=True)
    x = torch.randn(2, 16, 6, 5).bfloat16()
    state = {k: v.clone() for k, v in block.state_dict().items()}
    want = block(x.float())
    block.load_state_dict(state)
    xh = x.clone().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = compiled(xh)
    assert got.dtype == torch.bfloat16
    assert any(_is(t, FWD) for t in _op_targets(counter.graphs[-1]))
    rel = (got.float() - want).norm() / want.norm()
    assert rel < 1e-2
    got.float().sum().backward()
    assert xh.grad.dtype == torch.bfloat16 and torch.isfinite(xh.grad).all()
