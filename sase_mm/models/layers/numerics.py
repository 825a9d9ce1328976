"""Numerically safe elementwise helpers of the attention layers.

SASE (arXiv 2411.08333): the L_p-pooling, L2-norm and standard-deviation
squeezes take roots of sums that are zero on constant or 1x1 maps, where
the plain root's gradient is infinite. :func:`safe_sqrt` is their one root.
"""
import torch


def safe_sqrt(x: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """``x ** (1 / p)`` for x >= 0 with a finite gradient at 0.

    Equal to the plain root wherever x > 1e-12; below that the input is
    clamped, so an all-zero map (e.g. a 1x1 map after normalisation) gives a
    zero gradient instead of inf/NaN.

    Args:
        x (Tensor): non-negative values, any shape.
        p (float): the root's order (2: the square root).

    Returns:
        Tensor: x's shape.
    """
    x = x.clamp_min(1e-12)
    if p == 4.0:  # L4 pooling: two square roots cost less than a pow
        return x.sqrt().sqrt()
    return x.sqrt() if p == 2.0 else x.pow(1.0 / p)
