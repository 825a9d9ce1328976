"""The statistics of a study over seeds (SASE, arXiv 2411.08333: a block
compared with others over several trainings): mean and sample standard
deviation, and differences paired by seed with Student-t intervals."""
import math
import statistics

import pytest

from sase_mm.apis.study_stats import (mean_by_seed, mean_std,
                                      paired_difference, t_quantile)


def test_mean_std():
    assert mean_std([90.0, 92.0, 97.0]) == dict(
        mean=pytest.approx(93.0), std=pytest.approx(
            statistics.stdev([90, 92, 97])), n=3)
    assert mean_std([95.5]) == dict(mean=95.5, std=None, n=1)
    with pytest.raises(ValueError, match='at least one value'):
        mean_std([])


@pytest.mark.parametrize('df,want', [(1, 12.7062), (2, 4.3027),
                                     (4, 2.7764), (30, 2.0423)])
def test_t_quantile_matches_the_tables(df, want):
    assert t_quantile(df) == pytest.approx(want, abs=1e-4)


def test_paired_difference():
    a = {0: 95.0, 1: 96.0, 2: 94.0, 5: 99.0}
    b = {0: 94.0, 1: 94.0, 2: 94.5, 3: 90.0}
    d = paired_difference(a, b)
    diffs = [1.0, 2.0, -0.5]  # seeds 0, 1, 2: the ones both have
    half = 4.302652729911275 * statistics.stdev(diffs) / math.sqrt(3)
    assert d['seeds'] == [0, 1, 2] and d['n'] == 3
    assert d['mean'] == pytest.approx(statistics.mean(diffs))
    assert (d['low'], d['high']) == pytest.approx(
        (d['mean'] - half, d['mean'] + half))
    # Paired, not pooled: a constant gain has a zero-width interval even
    # when the seeds differ widely.
    d = paired_difference({0: 80.0, 1: 95.0}, {0: 79.0, 1: 94.0})
    assert (d['mean'], d['low'], d['high']) == pytest.approx((1, 1, 1))
    one = paired_difference({0: 95.0}, {0: 94.0, 1: 93.0})
    assert one['n'] == 1 and one['low'] is one['high'] is None
    assert paired_difference({0: 95.0}, {1: 94.0}) is None


def test_mean_by_seed():
    runs = [{0: 90.0, 1: 92.0, 2: 80.0}, {0: 94.0, 1: 96.0}]
    assert mean_by_seed(runs) == {0: 92.0, 1: 94.0}
    assert mean_by_seed([]) == {}
