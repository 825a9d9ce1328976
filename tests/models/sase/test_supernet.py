"""How the searchable SASE block shares its statistics (``sase/supernet.py``;
SASE, arXiv 2411.08333).

Its squeeze edges read :class:`MomentStats`, told what the block's squeeze
operations declare they read (``MixedOp.reads``, derived from their
``reads()``): the block with them equals the same block with plain
:class:`FeatureStats` (values, and the gradients of the input, of every
parameter and of the mixing weights), through the compiled kernels and
through PyTorch, at odd sizes, H * W = 1 and one channel group; and every
statistic of a map over some dims comes from one node.
"""
import pytest
import torch

from data_utils.autograd_graph import node_names
from data_utils.stat_paths import PATHS, use_stats_path

from sase_mm.models.layers.dims import C_DIMS, HW_DIMS
from sase_mm.models.layers.feature_stats import FeatureStats, MomentStats
from sase_mm.models.layers.reads import MAP, Read
from sase_mm.models.sase import EDGES, SASESearch, mixing


@pytest.fixture(params=PATHS)
def stats_path(request, monkeypatch):
    """The statistics through the compiled kernels (which must have built,
    unless switched off on purpose) and through PyTorch."""
    use_stats_path(request.param, monkeypatch)
    return request.param


def _perturbed_block(c, size):
    torch.manual_seed(0)
    block = SASESearch(c, spatial_size=size).double()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return block


def _run(block, x, mix, plain: bool):
    """Output and gradients (x, every parameter, the mixing weights) of
    the block, with plain FeatureStats if ``plain``."""
    if plain:
        block._stats, block._gated = FeatureStats, FeatureStats.gated
    x = x.detach().requires_grad_()
    mix = mix.detach().requires_grad_()
    with mixing(block.arch_alphas, mix):
        y = block(x)
    leaves = [x, mix] + [p for n, p in block.named_parameters()
                         if n != 'alphas']
    g = torch.randn_like(y)
    return [y] + list(torch.autograd.grad(y, leaves, g))


@pytest.mark.parametrize('shape', [(3, 8, 5, 7), (2, 16, 8, 8),
                                   (2, 8, 16, 16), (2, 8, 1, 1), (2, 4, 3, 3)],
                         ids=str)
def test_block_with_moment_stats_is_the_plain_block(stats_path, shape):
    """(2, 4, 3, 3): C = 4, so the channel covariance reduces to one
    channel group, and 9 positions: the spatial one upsamples from 8x8."""
    block = _perturbed_block(shape[1], shape[2:])
    x = torch.randn(shape, dtype=torch.float64)
    mix = torch.randn(6, 7, dtype=torch.float64).softmax(-1)
    torch.manual_seed(1)
    got = _run(block, x, mix, plain=False)
    torch.manual_seed(1)
    want = _run(block, x, mix, plain=True)
    for i, (a, b) in enumerate(zip(got, want)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10,
                                   msg=f'output {i}')


def test_block_reads_are_derived_from_its_operations():
    """The squeeze edges' reads are the union of their operations'
    ``reads()``; the excitations read nothing."""
    block = SASESearch(8)
    for edge, op in zip(EDGES, block.edges):
        want = frozenset().union(*(
            m.reads() for m in op.ops.values() if hasattr(m, 'reads')))
        assert op.reads() == want
        assert bool(want) == ('squeeze' in edge.name), edge.name
    reads = block.edges[0].reads() | block.edges[4].reads()
    assert MAP in reads
    assert {r.kind for r in reads if r.dims == HW_DIMS} == {
        'sum', 'amax', 'central', 'pow4'}
    assert Read('central', C_DIMS) in reads


def test_each_map_and_dims_has_one_moments_node():
    """E0 (x over H, W), E4 (x over C) and E3 (the gated map over C): three
    nodes compute every statistic of the block's squeezes."""
    block = SASESearch(8, spatial_size=(6, 6))
    y = block(torch.randn(2, 8, 6, 6, requires_grad=True))
    names = node_names(y)
    assert names.count('_MomentsBackward') == 3
    assert not {'_MeanAmaxBackward', '_CentralSumsBackward',
                '_Pow4SumBackward', '_SumBackward', '_GatedSumCBackward',
                '_GatedPow4SumCBackward'} & set(names)
    assert isinstance(block._stats(torch.zeros(1)), MomentStats)
