"""The shared statistics of one map, ``layers/feature_stats.py`` (SASE,
arXiv 2411.08333): each statistic against plain torch, computed once and
shared, the gated map described without being built, and the unbiased
std's divisor, also as a traced (tensor) count. :class:`MomentStats`
against :class:`FeatureStats` (values and gradients of every statistic,
through the kernels and through PyTorch): what it computes together is
what its readers declare, in one node."""
import pytest
import torch
from data_utils.autograd_graph import node_names
from stat_inputs import feature_map, gate

from sase_mm.models.layers.dims import C_DIMS, HW_DIMS
from sase_mm.models.layers.feature_stats import FeatureStats, MomentStats
from sase_mm.models.layers.reads import MAP, reading
from sase_mm.models.layers.stat_formulas import (Amax, CentralSums, Pow4Sum,
                                                 Sum)

DIMS = [HW_DIMS, C_DIMS]


@pytest.mark.parametrize('dims', DIMS)
def test_statistics_are_the_plain_formulas(dims):
    x = feature_map(ties=False)  # no constant channel: no root of 0
    s = FeatureStats(x)
    d = x - x.mean(dims, keepdim=True)
    n = x.numel() // x.sum(dims, keepdim=True).numel()
    want = {
        'sum': x.sum(dims, keepdim=True),
        'mean': x.mean(dims, keepdim=True),
        'amax': x.amax(dims, keepdim=True),
        'pow4_sum': x.pow(4).sum(dims, keepdim=True),
        'var': d.square().mean(dims, keepdim=True),
        'std_unbiased': x.std(dims, keepdim=True),
        'third_moment': d.pow(3).mean(dims, keepdim=True),
    }
    for name, value in want.items():
        torch.testing.assert_close(getattr(s, name)(dims), value,
                                   rtol=1e-10, atol=1e-12, msg=name)
    mean, m = FeatureStats(x).mean_amax(dims)
    torch.testing.assert_close(mean, want['mean'])
    torch.testing.assert_close(m, want['amax'])
    assert s.count(dims) == n


def test_each_statistic_is_computed_once():
    s = FeatureStats(feature_map())
    assert s.mean(HW_DIMS) is s.mean(HW_DIMS)
    # mean_amax fills both, and later calls reuse them.
    mean, m = s.mean_amax(C_DIMS)
    assert s.mean(C_DIMS) is mean and s.amax(C_DIMS) is m
    s2, _ = s.central_sums(HW_DIMS)
    assert s.central_sums(HW_DIMS)[0] is s2


def test_gated_statistics_do_not_build_the_map():
    x, g = feature_map(), gate()
    s = FeatureStats.gated(x, g)
    plain = FeatureStats(g * x)
    for name in ('sum', 'pow4_sum'):
        torch.testing.assert_close(getattr(s, name)(C_DIMS),
                                   getattr(plain, name)(C_DIMS),
                                   rtol=1e-10, atol=1e-12)
    assert s._x is None  # products with the gate only
    torch.testing.assert_close(s.amax(HW_DIMS), plain.amax(HW_DIMS))
    assert s._x is not None  # built on first use of the map


def test_std_of_one_element_is_zero_not_nan():
    """The divisor n - 1 is clamped to 1 (torch's std gives NaN); the
    root of 0 is ``safe_sqrt``'s floor, 1e-6."""
    x = torch.randn(2, 3, 1, 1, dtype=torch.float64)
    assert torch.isnan(x.std(HW_DIMS)).all()
    std = FeatureStats(x).std_unbiased(HW_DIMS)
    torch.testing.assert_close(std, torch.full_like(std, 1e-6))


class _TracedCount(FeatureStats):
    """The count as a tracing exporter records it: a 0-dim tensor."""

    def count(self, dims):
        return torch.tensor(super().count(dims))


@pytest.mark.parametrize('shape', [(2, 3, 4, 5), (2, 3, 1, 1)])
def test_std_divisor_of_a_traced_count(shape):
    """A tensor count is clamped in the graph, to the same value."""
    x = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(_TracedCount(x).std_unbiased(HW_DIMS),
                               FeatureStats(x).std_unbiased(HW_DIMS))


# ----------------------------------------------------------- MomentStats
#: What the squeeze sets read: every statistic over H, W and over C, and
#: the map.
ALL_READS = (reading(HW_DIMS, Sum, Amax, CentralSums, Pow4Sum)
             | reading(C_DIMS, Sum, Amax, CentralSums, Pow4Sum)
             | {MAP})
STATISTICS = ('sum', 'mean', 'amax', 'mean_amax', 'pow4_sum',
              'central_sums', 'var', 'std_unbiased', 'third_moment')


def _all_statistics(stats, dims):
    """Every statistic over ``dims``, flattened to a list of tensors."""
    out = []
    for name in STATISTICS:
        value = getattr(stats, name)(dims)
        out += list(value) if isinstance(value, tuple) else [value]
    return out


def _same_statistics(make_new, make_plain, x, leaves):
    """Every statistic of ``make_new()`` equals ``make_plain()``'s, values
    and gradients with respect to ``leaves``, over H, W and over C."""
    for dims in (HW_DIMS, C_DIMS):
        got = _all_statistics(make_new(), dims)
        want = _all_statistics(make_plain(), dims)
        grads = [torch.randn_like(w) for w in want]
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        for a, b in zip(torch.autograd.grad(got, leaves, grads),
                        torch.autograd.grad(want, leaves, grads)):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize('shape', [None, (3, 7, 5, 3), (2, 5, 1, 1),
                                   (2, 1, 3, 4)], ids=str)
def test_moment_stats_are_feature_stats(stats_path, shape):
    """Ties and a constant channel (the default map), odd sizes,
    H * W = 1, C = 1."""
    x = (feature_map(ties=False) if shape is None else
         torch.randn(shape, dtype=torch.float64)).requires_grad_()
    _same_statistics(lambda: MomentStats(x, ALL_READS),
                     lambda: FeatureStats(x), x, [x])


@pytest.mark.parametrize('reads', [ALL_READS, reading(C_DIMS, Sum, Pow4Sum),
                                   frozenset()], ids=['all', 'sums', 'none'])
def test_gated_moment_stats_are_feature_stats(stats_path, reads):
    x = feature_map(ties=False).requires_grad_()
    g = gate().requires_grad_()
    _same_statistics(lambda: MomentStats.gated(x, g, reads),
                     lambda: FeatureStats(g * x), x, [x, g])


@pytest.mark.parametrize('dims', [HW_DIMS, C_DIMS])
def test_moment_stats_compute_their_readers_statistics_in_one_node(dims):
    x = feature_map().requires_grad_()
    s = MomentStats(x, ALL_READS)
    outs = _all_statistics(s, dims)
    names = node_names(*outs)
    assert names.count('_MomentsBackward') == 1
    assert not {'_MeanAmaxBackward', '_CentralSumsBackward',
                '_Pow4SumBackward', '_SumBackward'} & set(names)
    assert s.sum(dims) is s.sum(dims)
    assert s.planned(dims) == {'sum', 'amax', 'central', 'pow4'}


def test_moment_stats_compute_what_is_read_and_only_that():
    """Over H, W only the sum and the max are read: one node computes
    those two (no central sums, no fourth powers); over C nothing is
    read, so a statistic asked for there is computed on its own, as
    FeatureStats computes it."""
    x = feature_map().requires_grad_()
    s = MomentStats(x, reading(HW_DIMS, Sum, Amax))
    assert s.planned(HW_DIMS) == {'sum', 'amax'}
    assert s.planned(C_DIMS) == frozenset()
    s.mean_amax(HW_DIMS)
    assert ('pow4', HW_DIMS) not in s._cache
    assert ('central_sums', HW_DIMS) not in s._cache
    assert node_names(s.pow4_sum(HW_DIMS)).count('_Pow4SumBackward') == 1
    assert '_MomentsBackward' not in node_names(s.mean(C_DIMS))


def test_gated_moment_stats_build_the_map_only_when_needed():
    x, g = feature_map(), gate()
    sums = MomentStats.gated(x, g, reading(C_DIMS, Sum, Pow4Sum))
    assert sums.planned(C_DIMS) == frozenset()  # products with the gate
    sums.sum(C_DIMS), sums.pow4_sum(C_DIMS)
    assert sums._x is None
    for reads in (reading(C_DIMS, Sum, Pow4Sum) | {MAP},
                  reading(C_DIMS, Sum, Amax)):
        s = MomentStats.gated(x, g, reads)
        assert s.planned(C_DIMS), reads
        s.sum(C_DIMS)
        assert s._x is not None
