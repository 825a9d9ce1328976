"""The shared statistics of one map, ``layers/feature_stats.py`` (SASE,
arXiv 2411.08333): each statistic against plain torch, computed once and
shared, the gated map described without being built, and the unbiased
std's divisor, also as a traced (tensor) count."""
import pytest
import torch
from stat_inputs import feature_map, gate

from sase_mm.models.layers.dims import C_DIMS, HW_DIMS
from sase_mm.models.layers.feature_stats import FeatureStats

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
