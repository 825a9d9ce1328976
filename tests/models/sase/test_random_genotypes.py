"""The random SASE genotypes of SASE (arXiv 2411.08333)'s "SASE (random)"
baseline: distinct, each edge uniform over its declared operations,
deterministic in the seed, a smaller number the prefix of a larger."""
import collections

import pytest

from sase_mm.models.sase import EDGES, Genotype
from sase_mm.models.sase.random_genotypes import (num_genotypes,
                                                  sample_genotypes)


def test_space_size():
    assert num_genotypes() == 7 ** 6 == 117649


def test_deterministic_distinct_prefix():
    a, b = sample_genotypes(20, 5), sample_genotypes(20, 5)
    assert a == b and all(isinstance(g, Genotype) for g in a)
    assert len(set(a)) == 20
    assert sample_genotypes(7, 5) == a[:7]
    assert sample_genotypes(20, 6) != a


def test_draws_are_pinned():
    # Studies and files name random genotypes by (seed, index): the draws
    # for a seed must not change from one version to the next.
    assert list(sample_genotypes(3, 0)[0]) == [
        'cov_pool', 'conv1d_k5', 'affine', 'gap_gmp', 'gap', 'conv_3x3']
    assert list(sample_genotypes(3, 0)[2]) == [
        'gap_gmp', 'conv1d_k3', 'conv1d_k7', 'l2_norm', 'gap_std',
        'sep_conv_5']


def test_each_edge_is_uniform():
    n = 2100
    drawn = sample_genotypes(n, 0)
    for i, e in enumerate(EDGES):
        counts = collections.Counter(g[i] for g in drawn)
        assert set(counts) == set(e.op_set.names), e.name
        # 300 expected per operation; 5 standard deviations is ~ +-80
        assert all(220 < c < 380 for c in counts.values()), (e.name, counts)


@pytest.mark.parametrize('num', [0, -2, 117650, True, 2.0, '3'])
def test_bad_num(num):
    with pytest.raises(ValueError, match=r'must be an int in \[1, 117649\]'):
        sample_genotypes(num, 0)
