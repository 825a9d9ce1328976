"""Shapes shared by every attention layer: reduced dimensions and sizes.

SASE (Searching Architecture for Squeeze and Excitation, arXiv 2411.08333)
and the attention modules it is compared with squeeze a feature map
(B, C, H, W) either per channel, reducing over H and W to (B, C, 1, 1), or
per position, reducing over C to (B, 1, H, W). The two sets of reduced
dimensions are defined here once, with the helpers for per-position
parameters built at one size and used at any other (docs/spec.md section 2,
"Resolution").
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .config import is_exportable

Dims = Tuple[int, ...]
#: Channel statistics reduce over H, W: (B, C, H, W) -> (B, C, 1, 1).
HW_DIMS: Dims = (2, 3)
#: Spatial statistics reduce over C: (B, C, H, W) -> (B, 1, H, W).
C_DIMS: Dims = (1, )
SizeLike = Union[int, Sequence[int]]
DEFAULT_SPATIAL_SIZE = (7, 7)


def count(shape: Sequence[int], dims: Dims) -> int:
    """Number of elements a reduction over ``dims`` of ``shape`` takes."""
    n = 1
    for d in dims:
        n *= shape[d]
    return n


def to_size(size: Optional[SizeLike]) -> Tuple[int, int]:
    """Normalises an int or (H, W) to a tuple; ``None`` gives the default."""
    if size is None:
        return DEFAULT_SPATIAL_SIZE
    if isinstance(size, int):
        return (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f'spatial_size must be an int or (H, W) of positive '
                         f'ints, got {size!r}')
    return size


def resize_to(param: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinearly resizes a (..., h, w) per-position parameter to ``size``.

    A parameter already of that size is returned as it is, but while the
    layers are exportable (``config.py``): a tracing exporter would freeze
    that shape comparison at the export size, and bilinear resizing to the
    same size is the identity.
    """
    if not is_exportable() and tuple(param.shape[-2:]) == tuple(size):
        return param
    lead = param.shape[:-2]
    out = F.interpolate(param.reshape(1, -1, *param.shape[-2:]), size=size,
                        mode='bilinear', align_corners=False)
    return out.reshape(*lead, *size)
