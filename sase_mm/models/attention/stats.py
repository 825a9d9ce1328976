"""Shared feature statistics for the squeeze operations of SASE.

SASE (Searching Architecture for Squeeze and Excitation, arXiv 2411.08333)
squeezes a feature map with seven candidate poolings per edge, and most of
them start from the same statistics of the same input: the mean, the centred
map, the variance, the maximum. During search all seven run on one input, and
the channel and spatial squeezes of the block input ``s0`` reduce the same
tensor, so one :class:`FeatureStats` per input computes each statistic once and
hands it to every operation that asks. An operation called alone builds its
own; the formulas are the same either way, so the numerics do not depend on
whether the statistics were shared.
"""
from typing import Dict, Tuple

import torch

Dims = Tuple[int, ...]


class FeatureStats:
    """Lazily computed, cached reductions of one tensor.

    Every statistic keeps the reduced dimensions (``keepdim=True``) so it
    broadcasts against ``x``.

    Args:
        x (Tensor): the feature map, (B, C, H, W).
    """

    def __init__(self, x: torch.Tensor):
        self.x = x
        self._cache: Dict[tuple, torch.Tensor] = {}

    def _get(self, key, fn):
        value = self._cache.get(key)
        if value is None:
            value = fn()
            self._cache[key] = value
        return value

    def count(self, dims: Dims) -> int:
        """Number of elements reduced over ``dims`` (the runtime size)."""
        n = 1
        for d in dims:
            n *= self.x.shape[d]
        return n

    def mean(self, dims: Dims) -> torch.Tensor:
        return self._get(('mean', dims),
                         lambda: self.x.mean(dim=dims, keepdim=True))

    def amax(self, dims: Dims) -> torch.Tensor:
        return self._get(('amax', dims),
                         lambda: self.x.amax(dim=dims, keepdim=True))

    def centered(self, dims: Dims) -> torch.Tensor:
        return self._get(('centered', dims), lambda: self.x - self.mean(dims))

    def var(self, dims: Dims) -> torch.Tensor:
        """Biased variance (divides by n), as the normalisation layers use."""
        return self._get(
            ('var', dims),
            lambda: self.centered(dims).square().mean(dim=dims, keepdim=True))

    def std_unbiased(self, dims: Dims) -> torch.Tensor:
        """Unbiased standard deviation (divides by n - 1).

        With a single element (n = 1) the unbiased estimate is undefined; the
        divisor is clamped to 1 so the result is 0 instead of NaN.
        """
        def compute():
            n = self.count(dims)
            ss = self.centered(dims).square().sum(dim=dims, keepdim=True)
            return safe_sqrt(ss / max(n - 1, 1))

        return self._get(('std', dims), compute)

    def third_moment(self, dims: Dims) -> torch.Tensor:
        """Third central moment, mean((x - mean)^3); not divided by std^3."""
        return self._get(
            ('m3', dims),
            lambda: self.centered(dims).pow(3).mean(dim=dims, keepdim=True))

    def normalized(self, dims: Dims, eps: float) -> torch.Tensor:
        """(x - mean) / sqrt(var + eps): Instance/LayerNorm without affine."""
        return self._get(
            ('normalized', dims, eps),
            lambda: self.centered(dims) * torch.rsqrt(self.var(dims) + eps))


def safe_sqrt(x: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """``x ** (1 / p)`` for x >= 0 with a finite gradient at 0.

    Equal to the plain root wherever x > 1e-12; below that the input is
    clamped, so an all-zero map (e.g. a 1x1 map after normalisation) gives a
    zero gradient instead of inf/NaN.
    """
    x = x.clamp_min(1e-12)
    return x.sqrt() if p == 2.0 else x.pow(1.0 / p)
