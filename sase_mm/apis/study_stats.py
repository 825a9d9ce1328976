"""Statistics of a study over seeds: mean, spread, paired differences.

SASE (arXiv 2411.08333) compares its searched block with others on one
training each; results of one network trained with different seeds vary by
about as much as blocks differ, so ``tools/analysis/evaluate_genotypes.py``
trains every candidate with several seeds and reports, for each, the mean
and sample standard deviation over seeds, and its difference to a
reference paired by seed (one seed trains every candidate on the same
order of batches) with a 95% Student-t interval.
"""
import math
from typing import Dict, Mapping, Optional, Sequence

CONFIDENCE = 0.95


def mean_std(values: Sequence[float]) -> Dict:
    """``dict(mean, std, n)``: the mean and the sample standard deviation
    (n - 1 in the denominator; None for n = 1)."""
    n = len(values)
    if n == 0:
        raise ValueError('mean_std needs at least one value')
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) \
        if n > 1 else None
    return dict(mean=mean, std=std, n=n)


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student-t quantile ``t_{(1 + confidence) / 2, df}``
    (4.303 for df = 2 at 95%)."""
    from scipy.stats import t  # scikit-learn's dependency
    return float(t.ppf((1 + confidence) / 2, df))


def paired_difference(values: Mapping[int, float],
                      reference: Mapping[int, float],
                      confidence: float = CONFIDENCE) -> Optional[Dict]:
    """The difference ``values - reference`` over the seeds both have.

    Args:
        values, reference: seed -> accuracy.

    Returns:
        ``dict(mean, low, high, n, seeds)``: the mean difference and its
        ``confidence`` t-interval (``low`` / ``high`` None for one pair);
        None when no seed is shared.
    """
    seeds = sorted(set(values) & set(reference))
    if not seeds:
        return None
    diffs = [values[s] - reference[s] for s in seeds]
    stats = mean_std(diffs)
    low = high = None
    if stats['n'] > 1:
        half = t_quantile(stats['n'] - 1, confidence) * stats['std'] / \
            math.sqrt(stats['n'])
        low, high = stats['mean'] - half, stats['mean'] + half
    return dict(mean=stats['mean'], low=low, high=high, n=stats['n'],
                seeds=seeds)


def mean_by_seed(runs: Sequence[Mapping[int, float]]) -> Dict[int, float]:
    """seed -> the mean over ``runs`` (each seed -> accuracy), for the
    seeds every one of them has (e.g. the mean of the random blocks)."""
    if not runs:
        return {}
    seeds = set.intersection(*(set(r) for r in runs))
    return {s: sum(r[s] for r in runs) / len(runs) for s in sorted(seeds)}
