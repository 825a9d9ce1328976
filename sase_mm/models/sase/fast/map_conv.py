"""Convolutions of 1-channel maps, the excitations' convolutions, on CPU.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333). The spatial excitations (docs/spec.md section 2.4)
convolve a (B, 1, H, W) map with 1 -> 1 kernels, and the channel ones
(section 2.3) the (B, C) values as one length-C sequence. PyTorch's CPU
convolutions cost about half a millisecond per such call, forward and
backward, whatever the map (the batch run as the groups of one
convolution, ``layers/excitation.py``), for a few thousand to a million
multiply-adds: at the CIFAR shapes, they are a large share of a block.

This module owns one operation, :func:`map_conv`: K kernels of odd sizes
(kh_j, kw_j), zero "same" padding, no bias, on maps x (B, Cx, H, W), where
Cx = 1 (every kernel reads the one map: the first layers of several
chains) or Cx = K (kernel j reads map j: later layers)::

    y[b, j, r, s] = sum_{u, v} w_j[u, v] x[b, cx(j), r + u - kh_j // 2,
                                            s + v - kw_j // 2]

On CPU in float32 / float64 it runs the compiled ``map_conv`` kernels
(``../kernels.py``, ``csrc/sase_fused.cpp``): the forward and its two
adjoints, each an autograd Function whose backward is made of the other
two, so derivatives of every order are exact (DARTS's second-order step
differentiates a gradient). Elsewhere (GPU, other dtypes, no compiler,
``torch.compile``, tracing, exportable layers) it is one ``conv2d`` with
the kernels zero-padded to the largest size, grouped when Cx = K.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ...layers.config import is_exportable
from ...layers.reference import reference_backward
from .kernels import fused_kernels

Sizes = Tuple[int, ...]  # (kh_0, kw_0, kh_1, kw_1, ...)


def kernel_sizes(kernels: Sequence[Tensor]) -> Sizes:
    """(kh, kw) of each kernel, flat: a kernel is (kh, kw) or any shape
    ending in it (a Conv2d weight); a 1-D kernel (k, ) or (1, 1, k), a
    Conv1d weight, is (1, k)."""
    sizes = []
    for k in kernels:
        sizes += [1 if k.dim() in (1, 3) else int(k.shape[-2]),
                  int(k.shape[-1])]
    return tuple(sizes)


def compiled_applies(x: Tensor) -> bool:
    """Whether :func:`map_conv` runs the compiled kernels on x: CPU,
    float32 / float64, kernels built, eager (not compiling, tracing or
    exportable)."""
    return (x.device.type == 'cpu'
            and x.dtype in (torch.float32, torch.float64)
            and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing() and not is_exportable()
            and fused_kernels() is not None)


class _MapConv(torch.autograd.Function):
    """y = map_conv(x, w): x (B, Cx, H, W), w the flat kernels."""

    @staticmethod
    def forward(ctx, x, w, sizes):
        ctx.save_for_backward(x, w)
        ctx.sizes = sizes
        return fused_kernels().map_conv(x.contiguous(), w.contiguous(),
                                        list(sizes))

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = gw = None
        # A first derivative calls the kernels; create_graph their
        # Functions, which are differentiable in turn.
        diff = torch.is_grad_enabled()
        if ctx.needs_input_grad[0]:
            gx = (_MapConvInputGrad.apply if diff else _input_grad)(
                g, w, ctx.sizes, x.shape[1])
        if ctx.needs_input_grad[1]:
            gw = (_MapConvWeightGrad.apply if diff else _weight_grad)(
                x, g, ctx.sizes)
        return gx, gw, None


def _input_grad(g: Tensor, w: Tensor, sizes: Sizes, cx: int) -> Tensor:
    return fused_kernels().map_conv_input_grad(
        g.contiguous(), w.contiguous(), list(sizes), cx)


def _weight_grad(x: Tensor, g: Tensor, sizes: Sizes) -> Tensor:
    return fused_kernels().map_conv_weight_grad(
        x.contiguous(), g.contiguous(), list(sizes))


class _MapConvInputGrad(torch.autograd.Function):
    """gx = the adjoint of map_conv in x applied to g (B, K, H, W), for
    maps of ``cx`` channels; bilinear in (g, w)."""

    @staticmethod
    def forward(ctx, g, w, sizes, cx):
        ctx.save_for_backward(g, w)
        ctx.sizes = sizes
        return _input_grad(g, w, sizes, cx)

    @staticmethod
    def backward(ctx, h):
        # <gx(g, w), h> = <g, map_conv(h, w)> = <w, weight_grad(h, g)>
        g, w = ctx.saved_tensors
        gg = gw = None
        if ctx.needs_input_grad[0]:
            gg = _MapConv.apply(h, w, ctx.sizes)
        if ctx.needs_input_grad[1]:
            gw = _MapConvWeightGrad.apply(h, g, ctx.sizes)
        return gg, gw, None, None


class _MapConvWeightGrad(torch.autograd.Function):
    """gw = the adjoint of map_conv in w, for maps x and output gradient g;
    bilinear in (x, g)."""

    @staticmethod
    def forward(ctx, x, g, sizes):
        ctx.save_for_backward(x, g)
        ctx.sizes = sizes
        return _weight_grad(x, g, sizes)

    @staticmethod
    def backward(ctx, m):
        # <gw(x, g), m> = <x, input_grad(g, m)> = <g, map_conv(x, m)>
        x, g = ctx.saved_tensors
        gx = gg = None
        if ctx.needs_input_grad[0]:
            gx = _MapConvInputGrad.apply(g, m, ctx.sizes, x.shape[1])
        if ctx.needs_input_grad[1]:
            gg = _MapConv.apply(x, m, ctx.sizes)
        return gx, gg, None


def _padded(kernels: Sequence[Tensor], sizes: Sizes) -> Tensor:
    """The kernels centred in zeros of the largest size, (K, 1, KH, KW)."""
    kh, kw = max(sizes[0::2]), max(sizes[1::2])
    return torch.stack([
        F.pad(k.reshape(h, w), ((kw - w) // 2, (kw - w) // 2,
                                (kh - h) // 2, (kh - h) // 2))
        for k, h, w in zip(kernels, sizes[0::2], sizes[1::2])
    ]).unsqueeze(1)


def map_conv(x: Tensor, kernels: Sequence[Tensor]) -> Tensor:
    """K convolutions of 1-channel maps (see the module docstring).

    Args:
        x: (B, Cx, H, W), Cx = 1 or K.
        kernels: K kernels, each (kh, kw) or a Conv2d weight (1, 1, kh, kw)
            (odd sizes), or a Conv1d weight (1, 1, k) for a (1, k) kernel.

    Returns:
        (B, K, H, W).

    Raises:
        ValueError: Cx is neither 1 nor K, or a kernel size is even.
    """
    sizes = kernel_sizes(kernels)
    k = len(kernels)
    if x.dim() != 4 or x.shape[1] not in (1, k):
        raise ValueError(f'map_conv: x must be (B, 1, H, W) or (B, {k}, H, '
                         f'W) for {k} kernels, got {tuple(x.shape)}')
    if any(s % 2 == 0 for s in sizes):
        raise ValueError(f'map_conv: kernel sizes must be odd, got '
                         f'{list(zip(sizes[0::2], sizes[1::2]))}')
    if compiled_applies(x):
        w = (kernels[0].reshape(-1) if k == 1 else torch.cat(
            [t.reshape(-1) for t in kernels]))
        return _MapConv.apply(x, w, sizes)
    w = _padded(kernels, sizes)
    return F.conv2d(x, w, padding=(w.shape[-2] // 2, w.shape[-1] // 2),
                    groups=x.shape[1])


def _split_like(flat: Tensor, kernels: Sequence[Tensor]) -> List[Tensor]:
    """``flat`` cut into tensors shaped like ``kernels``, each its own
    memory (gradients that share one would alias each other)."""
    if len(kernels) == 1:
        return [flat.view_as(kernels[0])]
    return [g.reshape(k.shape).clone()
            for g, k in zip(flat.split([k.numel() for k in kernels]),
                            kernels)]


class _ChainGate(torch.autograd.Function):
    """gate = sigmoid(conv_L(relu(... relu(conv_0(x))))) for x (B, 1, H, W)
    and L kernels, in one call of the compiled ``chain_gate`` kernel; the
    backward in one of ``chain_gate_backward``. The layers' outputs before
    their ReLU and the gate are kept for it."""

    @staticmethod
    def forward(ctx, x, sizes, *kernels):
        x = x.contiguous()
        w = (kernels[0].reshape(-1) if len(kernels) == 1 else torch.cat(
            [t.reshape(-1) for t in kernels])).contiguous()
        gate, pre = fused_kernels().chain_gate(x, w, list(sizes))
        ctx.save_for_backward(x, w, pre, gate, *kernels)
        ctx.sizes = sizes
        return gate

    @staticmethod
    def reference(x, sizes, *kernels):
        y = x
        for i, k in enumerate(kernels):
            y = map_conv(F.relu(y) if i else y, [k])
        return torch.sigmoid(y)

    @staticmethod
    def backward(ctx, grad):
        x, w, pre, gate, *kernels = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: exact higher derivatives
            return reference_backward(_ChainGate.reference,
                                      (x, ctx.sizes, *kernels), (grad, ),
                                      ctx.needs_input_grad)
        gx, gw = fused_kernels().chain_gate_backward(
            grad.contiguous(), x, pre, gate, w, list(ctx.sizes),
            ctx.needs_input_grad[0])
        return (gx if ctx.needs_input_grad[0] else None, None,
                *_split_like(gw, kernels))


def conv_chain_gate(x: Tensor, kernels: Sequence[Tensor]) -> Tensor:
    """``sigmoid(conv_L(relu(... relu(conv_0(x)))))``: an excitation's
    convolution chain and its sigmoid, on 1-channel maps.

    Args:
        x: (B, 1, H, W).
        kernels: the L layers' kernels, as for :func:`map_conv`.

    Returns:
        (B, 1, H, W).
    """
    if compiled_applies(x):
        return _ChainGate.apply(x, kernel_sizes(kernels), *kernels)
    return _ChainGate.reference(x, kernel_sizes(kernels), *kernels)
