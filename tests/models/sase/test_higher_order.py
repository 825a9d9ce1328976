"""Second derivatives through the SASE blocks (SASE, arXiv 2411.08333).

The statistics' Functions (``layers/stat_functions.py``), the squeezes'
(``layers/squeeze.py``) and the block output's (``sase/dag.py``) have
lean first-order backward passes; under ``create_graph=True`` they must
differentiate their plain-autograd reference instead, so double backward
(gradient penalties, exact unrolled DARTS gradients) is exact, never
silently truncated. Checked numerically in float64 with torch's
gradcheck/gradgradcheck on small maps (random inputs keep clear of the
ReLU / max kinks).
"""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from sase_mm.models.layers.dims import C_DIMS, HW_DIMS
from sase_mm.models.layers.feature_stats import FeatureStats
from sase_mm.models.sase import (EDGES, NUM_EDGES, NUM_OPS, SASE,
                                 SASESearch, mixing)
from sase_mm.models.sase.dag import scaled_residual


def _search_block():
    torch.manual_seed(0)
    block = SASESearch(4, spatial_size=(3, 2)).double()
    return block.eval()  # BN with running stats: a smooth function of x


def _at(block, w):
    """The block as a function of x at mixing weights w (bound)."""
    def run(x):
        with mixing(block.arch_alphas, w):
            return block(x)
    return run


def _mixing_weights():
    return torch.softmax(
        torch.randn(NUM_EDGES, NUM_OPS, dtype=torch.float64), -1)


# Each statistic through FeatureStats, i.e. through its Function (the gated
# ones of gate * x with the gate an input too).
STATISTICS = {
    'sum': lambda s, d: s.sum(d),
    'mean_amax': lambda s, d: s.mean_amax(d),
    'amax': lambda s, d: s.amax(d),
    'pow4': lambda s, d: s.pow4_sum(d),
    'central': lambda s, d: s.central_sums(d),
}


@pytest.mark.parametrize('dims', [HW_DIMS, C_DIMS])
@pytest.mark.parametrize('name', list(STATISTICS))
def test_statistic_second_derivatives(name, dims):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(lambda x: STATISTICS[name](FeatureStats(x), dims),
                         (x, ), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('name', ['sum', 'pow4'])
def test_gated_statistic_second_derivatives(name):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    gate = torch.rand(2, 3, 1, 1, dtype=torch.float64) + 0.5
    gate.requires_grad_()
    assert gradgradcheck(
        lambda x, g: STATISTICS[name](FeatureStats.gated(x, g), C_DIMS),
        (x, gate), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_block_output_second_derivatives():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    s2 = torch.randn(2, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    s5 = torch.randn(2, 1, 2, 3, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(scaled_residual, (x, s2, s5), eps=1e-6, atol=1e-5,
                         rtol=1e-4)


def test_search_block_first_derivatives_wrt_input_and_mixing_weights():
    block = _search_block()
    x = torch.randn(2, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    w = _mixing_weights().requires_grad_()
    assert gradcheck(lambda x, w: _at(block, w)(x), (x, w), eps=1e-6,
                     atol=1e-5, rtol=1e-4)


def test_search_block_second_derivatives():
    # All 42 candidate operations in one graph; a small map keeps the
    # numerical Hessian affordable.
    block = _search_block()
    x = torch.randn(1, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    w = _mixing_weights()
    assert gradgradcheck(_at(block, w), (x, ), eps=1e-6, atol=1e-5,
                         rtol=1e-4)


@pytest.mark.parametrize('genotype', [
    None,  # the paper's block: GAP+GMP, FC, affine, L4, GAP, 2 x conv 3x3
    ['gap_skew', 'conv1d_k5', 'fc', 'l2_norm', 'gap_std', 'affine'],
    ['l4_pool', 'affine', 'conv1d_k3', 'gap_gmp', 'l4_pool', 'conv_3x3'],
])
def test_fixed_block_second_derivatives(genotype):
    torch.manual_seed(0)
    block = SASE(4, genotype=genotype, spatial_size=(3, 2)).double().eval()
    with torch.no_grad():  # move the affine ops off their symmetric init
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(block, (x, ), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_double_backward_matches_unfused_reference():
    """grad of ||d loss / d x||^2 w.r.t. x equals the same computed with
    every operation written in plain torch (a hand-built reference DAG)."""
    torch.manual_seed(0)
    block = SASE(8, spatial_size=(4, 3)).double().eval()
    x = torch.randn(2, 8, 4, 3, dtype=torch.float64, requires_grad=True)

    def reference(x):
        e = block.edges
        w0 = e[0].merge.weight.view(2)
        s1 = torch.relu(w0[0] * x.mean((2, 3), keepdim=True) +
                        w0[1] * x.amax((2, 3), keepdim=True))
        fc = e[1]
        s2 = fc.expand.weight.flatten(1) @ torch.relu(
            fc.reduce.weight.flatten(1) @ s1.flatten(1).T)
        s2 = s2.T.reshape_as(s1)
        s3 = torch.sigmoid(e[2].weight * s1 + e[2].bias) * x
        e3 = s3.pow(4).sum(1, keepdim=True).pow(0.25)
        e4 = x.mean(1, keepdim=True)
        mixed = block.mixer[0].weight.view(2)
        s4 = torch.relu(block.mixer[1](mixed[0] * e3 + mixed[1] * e4))
        c1, c2 = e[5].convs
        s5 = torch.sigmoid(c2(torch.relu(c1(s4))))
        return x * (s2 + s5) / 2 + x

    def penalty(fn):
        y = fn(x)
        g, = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        h, = torch.autograd.grad(g.square().sum(), x)
        return h

    torch.testing.assert_close(block(x), reference(x))
    got, want = penalty(block), penalty(reference)
    print('max |d2 ours - d2 reference|:', (got - want).abs().max().item())
    torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-9)
    assert EDGES[0].op_set.name == 'channel_squeeze'


@pytest.mark.parametrize('make', ['fixed', 'search'])
@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_first_derivative_same_with_and_without_create_graph(make, mode):
    """Under create_graph the lean backward passes differentiate a plain
    recomputation; its gradient must be the partial derivative of each
    input. (It once also followed the paths by which the gate and the maps
    depend on x, so x's gradient was wrong only when create_graph=True.)"""
    torch.manual_seed(0)
    if make == 'fixed':
        block = SASE(8, spatial_size=(4, 3)).double()
        with torch.no_grad():
            for p in block.parameters():
                p.add_(0.2 * torch.randn_like(p))
        run = block.forward_generic
    else:
        block = SASESearch(8, spatial_size=(4, 3)).double()
        run = _at(block, _mixing_weights())
    block.train(mode == 'train')
    x = torch.randn(2, 8, 4, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 8, 4, 3, dtype=torch.float64)
    inputs = [x] + list(block.parameters())
    plain = torch.autograd.grad(run(x), inputs, g, allow_unused=True)
    graph = torch.autograd.grad(run(x), inputs, g, create_graph=True,
                                allow_unused=True)
    for a, b in zip(plain, graph):
        if a is None:
            assert b is None
            continue
        torch.testing.assert_close(b.detach(), a, rtol=1e-10, atol=1e-12)
