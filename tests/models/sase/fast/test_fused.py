"""The fused fixed SASE block (``fused.py``, ``csrc/sase_fused.cpp``).

SASE (arXiv 2411.08333). When training, the fixed block runs as one autograd
node with a closed-form input gradient, computed by compiled CPU kernels or,
without them, by PyTorch operators. Both must give the generic graph's
output and gradients (x and every parameter) for every genotype the fused
path accepts, keep BatchNorm's running statistics updated once per forward,
and stay exact under double backward and repeated backward.
"""
import itertools
import os

import pytest
import torch

import sase_mm.models.sase.fast.fused as fused_mod
import sase_mm.models.sase.fast.fused.dispatch as dispatch_mod
from sase_mm.models.sase.fast import kernels as kernels_mod
from sase_mm.models.sase import SASE
from sase_mm.models.sase.fast.fused import FUSABLE, fusable
from sase_mm.models.sase.fast.kernels import fused_kernels
from sase_mm.models.sase.space import EDGES

PAPER = ['gap_gmp', 'fc', 'affine', 'l4_pool', 'gap', 'conv_3x3_x2']
COMBOS = list(itertools.product(sorted(FUSABLE[0]), sorted(FUSABLE[3]),
                                 sorted(FUSABLE[4])))


def _kernels():
    """The compiled kernels; their absence is a failure unless switched off
    on purpose (``SASE_MM_NO_EXT=1``), which skips with that reason."""
    if os.environ.get('SASE_MM_NO_EXT', '') not in ('', '0'):
        pytest.skip('SASE_MM_NO_EXT is set: compiled kernels switched off')
    kernels = fused_kernels()
    assert kernels is not None, \
        f'kernels did not build: {kernels_mod._state["error"]}'
    return kernels


@pytest.fixture(params=['kernels', 'torch'])
def path(request, monkeypatch):
    """Runs a test through the compiled kernels and through the PyTorch
    closed forms (kernels hidden)."""
    if request.param == 'kernels':
        _kernels()
    else:
        monkeypatch.setattr(dispatch_mod, 'fused_kernels', lambda: None)
    return request.param


def _block(genotype, c=16, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    block = SASE(c, genotype=genotype, spatial_size=(5, 6)).to(dtype)
    with torch.no_grad():  # off the symmetric init, so nothing cancels
        for p in block.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return block


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
def test_fused_equals_generic_for_every_fusable_genotype(e0, e3, e4, path):
    block = _block(_genotype(e0, e3, e4))
    assert block.fused
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    _assert_same(block, x, torch.randn_like(x))


@pytest.mark.parametrize('shape', [(3, 16, 7, 7), (2, 16, 1, 1),
                                   (1, 16, 3, 11), (2, 40, 9, 4)])
def test_paper_block_shapes_ties_and_float32(shape, path):
    block = _block(PAPER, c=shape[1])
    x = torch.randn(*shape, dtype=torch.float64)
    # Ties of the spatial maximum: their gradient is shared, as torch.amax.
    x[0, :, 0, 0] = x[0].amax(dim=(1, 2))
    x[-1, 3] = 0.5  # a constant channel: every position ties
    _assert_same(block, x, torch.randn_like(x))
    block32 = block.float()
    _assert_same(block32, x.float(), torch.randn(*shape), rtol=1e-4,
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


def test_kernels_against_torch():
    k = _kernels()
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(3, 5, 4, 7, dtype=dtype)
        x[0, 1, 0, 0] = x[0, 1, 3, 6] = x[0, 1].max() + 1  # two maxima
        x[2, 4] = 1.0
        b, c, n = 3, 5, 28
        xf = x.reshape(b, c, n)
        s, m, cnt = k.row_stats(x)
        torch.testing.assert_close(s, xf.sum(-1))
        assert torch.equal(m, xf.amax(-1))
        assert torch.equal(cnt, (xf == xf.amax(-1, keepdim=True)).sum(-1)
                           .to(dtype))
        assert cnt[0, 1] == 2 and cnt[2, 4] == n
        w = torch.rand(b, c, dtype=dtype)
        torch.testing.assert_close(k.gated_pow4_sum(x, w),
                                   (w[:, :, None] * xf**4).sum(1))
        v = torch.randn(b, n, dtype=dtype)
        want = (xf**4 * v[:, None]).sum(-1)
        torch.testing.assert_close(k.pow4_rowdot(x, v), want, rtol=1e-4,
                                   atol=1e-4 * want.abs().max().item())
        g = torch.randn_like(x)
        row, col = k.grad_dots(g, x)
        gf = g.reshape(b, c, n)
        torch.testing.assert_close(row, (gf * xf).sum(-1))
        torch.testing.assert_close(col, (gf * xf).sum(1))
        a, bn = torch.randn(b, c, dtype=dtype), torch.randn(b, n, dtype=dtype)
        torch.testing.assert_close(
            k.scale(x, a, bn).reshape(b, c, n),
            xf * (a[:, :, None] + bn[:, None]))
        r, u, sh, kk = (torch.randn(b, c, dtype=dtype) for _ in range(4))
        s_, v_, q = (torch.randn(b, n, dtype=dtype) for _ in range(3))
        want = (gf * (a[:, :, None] + bn[:, None]) + r[:, :, None]
                + s_[:, None] + u[:, :, None] * v_[:, None]
                + (xf == m[:, :, None]).to(dtype) * sh[:, :, None]
                + kk[:, :, None] * xf**3 * q[:, None])
        torch.testing.assert_close(
            k.combine(g, x, a, bn, r, s_, u, v_, m, sh, kk, q).reshape(
                b, c, n), want)
        torch.testing.assert_close(
            k.combine(g, x, a, bn, *[None] * 8).reshape(b, c, n),
            gf * (a[:, :, None] + bn[:, None]))
    nan = torch.randn(1, 2, 3, 3)
    nan[0, 0, 1, 1] = float('nan')
    assert torch.isnan(k.row_stats(nan)[1][0, 0])
    assert not torch.isnan(k.row_stats(nan)[1][0, 1])
    with pytest.raises(RuntimeError, match='contiguous'):
        k.row_stats(torch.randn(2, 3, 4, 4).transpose(2, 3))
