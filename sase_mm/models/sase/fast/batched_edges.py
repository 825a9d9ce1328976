"""The seven candidates of one search edge, evaluated together.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333); DARTS (Liu et al., ICLR 2019). During the search every
edge computes ``sum_o w_o op_o(x)`` over the seven operations of its set
(docs/spec.md section 3). On the CIFAR shapes the maps are tiny (B x C values
for a channel excitation), so running the seven operations one by one costs
mostly per-operator overhead: the ECA-style 1-D convolutions of the channel
excitation set alone are eight grouped convolutions per edge, whose CPU
kernels take about a millisecond each, forward and backward, for a few
thousand multiply-adds.

This module evaluates a whole edge with a handful of operators instead. The
values are those of the operations in ``layers/excitation.py`` up to float rounding
(sums taken in another order); the parameters are the operations' own, so
state-dict keys and ``derive()`` are unchanged, and everything is plain
autograd, so higher derivatives are exact.

A 1 -> 1 channel convolution (zero padding, no bias) is a product with a
constant-pattern matrix holding the kernel's taps (:func:`conv_matrix`;
banded Toeplitz for a 1-D one), so convolutions that read the same input
become one matrix product with their matrices side by side:

* channel excitation: the five conv1d chains' first convolutions are one
  (C, 5 C) product, the two deeper chains' second convolutions one
  block-diagonal product, the third one more; FC and affine as before;
* spatial excitation on maps of at most :data:`MAX_DENSE_POSITIONS`
  positions (the 16 x 16 and 8 x 8 stages of ResNet-20): the six
  convolution operations' first layers are one (H W, 6 H W) product and
  the second 3 x 3 of ``2 x conv 3x3`` one more; larger maps keep the
  grouped convolutions of ``layers/excitation.py``.

The sigmoids of an edge run as one, and the mixture ``sum_o w_o y_o`` is one
product of the weights with the stacked outputs (:func:`weighted_sum` for
the sets run operation by operation).
"""
import functools
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...layers.dims import resize_to
from ...layers.excitation import (ChannelAffine, Conv1dChain, FCExcitation,
                                  SpatialAffine, SpatialConv)


@functools.lru_cache(maxsize=64)
def _conv_index(size: Tuple[int, int], kernel_sizes: Tuple[Tuple[int, int],
                                                          ...],
                block_diagonal: bool, device: torch.device):
    """Where the kernels' taps go in the matrices of their convolutions.

    For 1 -> 1 channel kernels K_0, K_1, ... of sizes (kh, kw) (zero
    padding kh // 2, kw // 2, no bias) on an (H, W) map, the matrices M_j
    with ``x @ M_j = conv2d(x, K_j)`` for x flattened to (N, H W) have
    ``M_j[(hi, wi), (ho, wo)] = K_j[hi - ho + kh // 2, wi - wo + kw // 2]``
    inside the kernel's reach, zero elsewhere. They are laid side by side,
    (H W, n H W), when the convolutions share their input, and
    block-diagonally, (n H W, n H W), when convolution j reads columns
    j H W to (j + 1) H W (``block_diagonal``).

    Returns ``(positions, taps, shape)``: the flat positions of the nonzero
    entries and, for each, its index into the kernels flattened and
    concatenated.
    """
    h, w = size
    n = h * w
    ho = torch.arange(h).view(h, 1, 1, 1)
    wo = torch.arange(w).view(1, w, 1, 1)
    rows = n * len(kernel_sizes) if block_diagonal else n
    cols = n * len(kernel_sizes)
    positions, taps = [], []
    offset = 0
    for j, (kh, kw) in enumerate(kernel_sizes):
        i = torch.arange(kh).view(1, 1, kh, 1)
        k = torch.arange(kw).view(1, 1, 1, kw)
        hi, wi = ho + i - kh // 2, wo + k - kw // 2
        valid = ((hi >= 0) & (hi < h) & (wi >= 0) & (wi < w)).expand(
            h, w, kh, kw)
        row = (hi * w + wi + (j * n if block_diagonal else 0)).expand_as(
            valid)[valid]
        col = (j * n + ho * w + wo).expand_as(valid)[valid]
        positions.append(row * cols + col)
        taps.append((offset + i * kw + k).expand_as(valid)[valid])
        offset += kh * kw
    return (torch.cat(positions).to(device), torch.cat(taps).to(device),
            (rows, cols))


def conv_matrix(kernels: Sequence[torch.Tensor], size: Tuple[int, int],
                block_diagonal: bool = False) -> torch.Tensor:
    """The matrices of 1 -> 1 channel convolutions on an (H, W) map.

    Args:
        kernels: each (kh, kw) or any shape ending in it (a conv weight
            (1, 1, kh, kw)); a 1-D kernel (1, 1, k) acts on a (1, W) map.
        size: (H, W) of the map.
        block_diagonal: see :func:`_conv_index`.

    Returns:
        (H W, n H W) or (n H W, n H W): ``x.flatten(1) @ M`` is the n
        convolutions of x side by side. Only the nonzero entries are
        written (``index_copy``), and their gradient flows back to the
        kernels through ``index_select``'s (an ``index_add``).
    """
    # A Conv1d weight (1, 1, k) is a (1, k) kernel.
    sizes = tuple((1 if k.dim() in (1, 3) else int(k.shape[-2]),
                   int(k.shape[-1])) for k in kernels)
    flat = torch.cat([k.reshape(-1) for k in kernels])
    positions, taps, shape = _conv_index(tuple(size), sizes, block_diagonal,
                                         flat.device)
    dense = flat.new_zeros(shape[0] * shape[1])
    return dense.index_copy(0, positions, flat.index_select(0, taps)).view(
        shape)


def weighted_sum(outputs: List[torch.Tensor],
                 weights: torch.Tensor) -> torch.Tensor:
    """``sum_o weights[o] * outputs[o]`` as one stacked product.

    One matrix product (and its two in the backward pass) instead of seven
    multiplications, six additions and their thirteen autograd nodes.
    """
    first = outputs[0]
    stacked = torch.stack([o.reshape(-1) for o in outputs])
    return torch.matmul(weights, stacked).view(first.shape)


# --------------------------------------------------------------------------
# Channel excitation: (B, C, 1, 1) -> (B, C, 1, 1).
# --------------------------------------------------------------------------
# Above this many channels the (C, 5 C) matrices cost more than the grouped
# convolutions (and grow as C^2: 21M entries at C = 2048), so the
# operations run one by one.
MAX_DENSE_CHANNELS = 256
# Column order of the sigmoid outputs, as indices of the set's operations:
# conv1d_k3_x3, conv1d_k3_x2, conv1d_k3, conv1d_k5, conv1d_k7, affine.
_CE_SIGMOID_ORDER = (0, 5, 2, 3, 4, 6)
_CE_TYPES = (Conv1dChain, FCExcitation, Conv1dChain, Conv1dChain,
             Conv1dChain, Conv1dChain, ChannelAffine)
_CE_DEPTHS = (3, None, 1, 1, 1, 2, None)


def channel_excitation_batchable(ops: Sequence[nn.Module]) -> bool:
    """Whether ``ops`` are the channel excitation set's seven operations."""
    return (len(ops) == len(_CE_TYPES) and all(
        type(op) is t for op, t in zip(ops, _CE_TYPES)) and all(
            d is None or len(op.convs) == d
            for op, d in zip(ops, _CE_DEPTHS)))


def channel_excitation_mixture(ops: Sequence[nn.Module], x: torch.Tensor,
                               weights: torch.Tensor) -> torch.Tensor:
    """``sum_o weights[o] * ops[o](x)`` for the channel excitation set.

    Up to :data:`MAX_DENSE_CHANNELS` channels the 1-D convolutions are
    products with (C, C) band matrices (see the module docstring); above,
    the operations run one by one.

    Args:
        ops: the set's seven operations, in column order (``space.py``).
        x: (B, C, 1, 1).
        weights: (7, ) mixing weights.
    """
    b, c = x.shape[:2]
    if c > MAX_DENSE_CHANNELS:
        return weighted_sum([op(x) for op in ops], weights)
    deep3, fc, k3, k5, k7, deep2, affine = ops
    xf = x.reshape(b, c)
    # Layer 1 of the five chains: one (C, 5C) product.
    m1 = conv_matrix([deep3.convs[0].weight, deep2.convs[0].weight,
                      k3.convs[0].weight, k5.convs[0].weight,
                      k7.convs[0].weight], (1, c))
    y1 = xf @ m1  # (B, 5C): deep3, deep2, k3, k5, k7
    # Layer 2 of the two deeper chains: one block-diagonal product.
    m2 = conv_matrix([deep3.convs[1].weight, deep2.convs[1].weight],
                     (1, c), block_diagonal=True)
    y2 = F.relu(y1[:, :2 * c]) @ m2  # (B, 2C): deep3, deep2
    # Layer 3 of conv1d_k3_x3.
    y3 = F.relu(y2[:, :c]) @ conv_matrix([deep3.convs[2].weight], (1, c))
    aff = torch.addcmul(affine.bias.view(1, c), affine.weight.view(1, c), xf)
    gates = torch.sigmoid(torch.cat([y3, y2[:, c:], y1[:, 2 * c:], aff], 1))
    mixed = torch.matmul(weights[list(_CE_SIGMOID_ORDER)],
                         gates.view(b, len(_CE_SIGMOID_ORDER), c))
    # The FC bottleneck (no sigmoid by default, docs/spec.md section 7).
    hid = F.relu(F.linear(xf, fc.reduce.weight.flatten(1)))
    y_fc = F.linear(hid, fc.expand.weight.flatten(1))
    if fc.sigmoid:
        y_fc = torch.sigmoid(y_fc)
    return torch.addcmul(mixed, weights[1], y_fc).view_as(x)


# --------------------------------------------------------------------------
# Spatial excitation: (B, 1, H, W) -> (B, 1, H, W).
# --------------------------------------------------------------------------
# Above this many positions the (H W, 6 H W) matrices cost more than the
# grouped convolutions (at 32 x 32 they would hold 6.3M entries).
MAX_DENSE_POSITIONS = 256
_SE_TYPES = (SpatialConv, ) * 6 + (SpatialAffine, )
_SE_KERNELS = (((1, 3), (3, 1)), ((1, 5), (5, 1)), ((3, 3), ), ((5, 5), ),
               ((7, 7), ), ((3, 3), (3, 3)))


def spatial_excitation_batchable(ops: Sequence[nn.Module]) -> bool:
    """Whether ``ops`` are the spatial excitation set's seven operations."""
    if len(ops) != len(_SE_TYPES) or not all(
            type(op) is t for op, t in zip(ops, _SE_TYPES)):
        return False
    return all(
        tuple(tuple(c.kernel_size) for c in op.convs) == k
        and all(c.bias is None for c in op.convs)
        for op, k in zip(ops, _SE_KERNELS)) and not any(
            op.relu_between for op in ops[:2]) and ops[5].relu_between


def spatial_excitation_mixture(ops: Sequence[nn.Module], x: torch.Tensor,
                               weights: torch.Tensor) -> torch.Tensor:
    """``sum_o weights[o] * ops[o](x)`` for the spatial excitation set.

    On maps of at most :data:`MAX_DENSE_POSITIONS` positions the
    convolutions are products with (H W, H W) matrices: the separable pairs
    (1 x k then k x 1, no ReLU between) are one k x k convolution with the
    outer product of their kernels, so the first layer of all six is one
    product and the second convolution of ``2 x conv 3x3`` one more.
    Larger maps run the operations one by one.

    Args:
        ops: the set's seven operations, in column order (``space.py``).
        x: (B, 1, H, W).
        weights: (7, ) mixing weights.
    """
    b, _, h, w = x.shape
    if h * w > MAX_DENSE_POSITIONS:
        return weighted_sum([op(x) for op in ops], weights)
    sep3, sep5, c3, c5, c7, deep, affine = ops

    def separable(op):
        (row, col) = (c.weight for c in op.convs)  # (1, k) then (k, 1)
        return col.reshape(-1, 1) * row.reshape(1, -1)

    xf = x.reshape(b, h * w)
    m1 = conv_matrix([separable(sep3), separable(sep5), c3.convs[0].weight,
                      c5.convs[0].weight, c7.convs[0].weight,
                      deep.convs[0].weight], (h, w))
    y1 = xf @ m1  # (B, 6 H W): sep3, sep5, c3, c5, c7, deep (layer 1)
    y2 = F.relu(y1[:, 5 * h * w:]) @ conv_matrix([deep.convs[1].weight],
                                                  (h, w))
    size = (h, w)
    aff = torch.addcmul(resize_to(affine.bias, size).reshape(1, -1),
                        resize_to(affine.weight, size).reshape(1, -1), xf)
    gates = torch.sigmoid(torch.cat([y1[:, :5 * h * w], y2, aff], 1))
    return torch.matmul(weights, gates.view(b, 7, h * w)).view(b, 1, h, w)


# Edge evaluators by operation-set name: (batchable(ops), mixture(ops, x, w)).
BATCHED: Dict[str, Tuple[Callable, Callable]] = {
    'channel_excitation': (channel_excitation_batchable,
                           channel_excitation_mixture),
    'spatial_excitation': (spatial_excitation_batchable,
                           spatial_excitation_mixture),
}


def batched_mixture(set_name: str,
                    ops: Sequence[nn.Module]) -> Optional[Callable]:
    """The batched evaluator of ``set_name``'s edge, if ``ops`` allow one."""
    entry = BATCHED.get(set_name)
    if entry is None or not entry[0](ops):
        return None
    return entry[1]
