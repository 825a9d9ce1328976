"""Candidates measured in one run, repetition by repetition.

Shared by the benchmarks of SASE (arXiv 2411.08333). The machines these run
on are shared and their speed drifts, so every benchmark compares candidates
timed in the same run: each repetition runs every candidate once, in an
order that alternates between repetitions, so that none always runs first
(or always right after a particular other one).
"""
import time
from typing import Callable, Dict, List


def interleaved(candidates: Dict[str, Callable], reps: int,
                warmup: int = 0) -> Dict[str, List]:
    """Runs each zero-argument callable ``warmup`` times, then ``reps`` times
    interleaved; returns what the timed calls returned, per candidate."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    results = {k: [] for k in candidates}
    for r in range(reps):
        order = list(candidates.items())
        if r % 2:
            order.reverse()  # alternate who runs first
        for k, fn in order:
            results[k].append(fn())
    return results


def timed(fn: Callable, clock: Callable = time.perf_counter) -> Callable:
    """``fn`` as a callable that returns its duration in seconds."""
    def run():
        t0 = clock()
        fn()
        return clock() - t0
    return run
