"""Excitation operations: a squeezed map to attention weights.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333), the channel and spatial excitation sets (docs/spec.md
section 2); ECA's 1-D convolution and SE's bottleneck are among them. A
channel excitation maps (B, C, 1, 1) -> (B, C, 1, 1), a spatial one
(B, 1, H, W) -> (B, 1, H, W). Each takes ``forward(x, stats=None)`` like the
squeezes (and ignores ``stats``) so that the two kinds are interchangeable
in a block's edges.

The 1 -> 1 convolutions (ECA's chain, the spatial convs) run the batch as
the groups of one depthwise convolution, far faster on CPU than a
1-channel convolution over a batch. Each also has that plain form
(``forward_plain``, same weights, same values), which runs under
``torch.compile`` and while the layers are exportable (``config.py``):
inductor cannot order the symbolic strides of the grouped form's (1, B, ...)
view saved for backward, and a tracing exporter would freeze ``groups=B``
at the export batch.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import is_exportable
from .dims import SizeLike, resize_to, to_size


class Conv1dChain(nn.Module):
    """ECA-style 1-D convs over the channel sequence, ReLU between, sigmoid.

    (B, C, 1, 1) -> (B, C, 1, 1): the C values are one length-C sequence;
    each conv is Conv1d(1 -> 1, kernel k, padding k // 2, no bias).
    """

    def __init__(self, kernel_size: int, depth: int = 1):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)
            for _ in range(depth))

    @property
    def kernel_size(self) -> Optional[int]:
        """k of the chain's convs (one k for all; None for an empty chain)."""
        return self.convs[0].kernel_size[0] if len(self.convs) else None

    @property
    def depth(self) -> int:
        """Number of convs in the chain."""
        return len(self.convs)

    def forward(self, x, stats=None):
        if torch.compiler.is_compiling() or is_exportable():
            return self.forward_plain(x)
        b = x.shape[0]
        # The batch as groups of one depthwise conv (see the module doc).
        y = x.reshape(1, b, -1)
        for i, conv in enumerate(self.convs):
            if i:
                y = F.relu(y)
            y = F.conv1d(y, conv.weight.expand(b, 1, -1),
                         padding=conv.padding, groups=b)
        return torch.sigmoid(y).view_as(x)

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` as a 1-channel conv over the batch, (B, 1, C):
        the form compiled and exported (see the module doc)."""
        y = x.reshape(x.shape[0], 1, -1)
        for i, conv in enumerate(self.convs):
            y = F.conv1d(F.relu(y) if i else y, conv.weight,
                         padding=conv.padding)
        return torch.sigmoid(y).reshape(x.shape)


class FCExcitation(nn.Module):
    """SE's bottleneck: Conv2d(C -> C/r, 1x1), ReLU, Conv2d(-> C, 1x1).

    No sigmoid by default, as in the reference code (docs/spec.md section 7);
    ``sigmoid=True`` gives the paper's bounded form.
    """

    def __init__(self, channels: int, reduction: int = 16,
                 sigmoid: bool = False):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=False)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=False)
        self.sigmoid = sigmoid

    def forward(self, x, stats=None):
        # 1x1 convs on a (B, C, 1, 1) map are linear layers; F.linear skips
        # the convolution machinery (same weights, same keys).
        y = F.linear(x.flatten(1), self.reduce.weight.flatten(1))
        y = F.linear(F.relu(y), self.expand.weight.flatten(1))
        y = y.view_as(x)
        return torch.sigmoid(y) if self.sigmoid else y

    def extra_repr(self):
        return f'sigmoid={self.sigmoid}'


class ChannelAffine(nn.Module):
    """sigmoid(a * x + b) with a, b per channel; a = 1, b = 0 at start."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x, stats=None):
        return torch.sigmoid(torch.addcmul(self.bias, self.weight, x))


class SpatialAffine(nn.Module):
    """sigmoid(a * x + b) with a, b per position, resized to the input."""

    def __init__(self, spatial_size: SizeLike = None):
        super().__init__()
        size = to_size(spatial_size)
        self.weight = nn.Parameter(torch.ones(1, *size))
        self.bias = nn.Parameter(torch.zeros(1, *size))

    def forward(self, x, stats=None):
        size = x.shape[-2:]
        return torch.sigmoid(
            torch.addcmul(resize_to(self.bias, size),
                          resize_to(self.weight, size), x))


class SpatialConv(nn.Module):
    """1 -> 1 channel convs (no bias), ReLU between, then sigmoid.

    Args:
        kernel_sizes: one (kh, kw) per conv; padding keeps H and W.
        relu_between: ReLU between consecutive convs (``2 x conv 3x3``);
            the separable pair (1xk then kx1) has none.
    """

    def __init__(self, kernel_sizes: Sequence[Tuple[int, int]],
                 relu_between: bool = True):
        super().__init__()
        self.relu_between = relu_between
        self.convs = nn.ModuleList(
            nn.Conv2d(1, 1, k, padding=(k[0] // 2, k[1] // 2), bias=False)
            for k in kernel_sizes)

    @property
    def kernel_sizes(self) -> Tuple[Tuple[int, int], ...]:
        """(kh, kw) of each conv, in application order."""
        return tuple(tuple(conv.kernel_size) for conv in self.convs)

    @property
    def depth(self) -> int:
        """Number of convs."""
        return len(self.convs)

    def forward(self, x, stats=None):
        if torch.compiler.is_compiling() or is_exportable():
            return self.forward_plain(x)
        b, _, h, w = x.shape
        # The batch as groups of one depthwise conv (see the module doc).
        y = x.reshape(1, b, h, w)
        for i, conv in enumerate(self.convs):
            if i and self.relu_between:
                y = F.relu(y)
            y = F.conv2d(y, conv.weight.expand(b, 1, -1, -1),
                         padding=conv.padding, groups=b)
        return torch.sigmoid(y).view(b, 1, h, w)

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` as a 1-channel conv over the batch: the form
        compiled and exported (see the module doc)."""
        y = x
        for i, conv in enumerate(self.convs):
            y = conv(F.relu(y) if i and self.relu_between else y)
        return torch.sigmoid(y)
