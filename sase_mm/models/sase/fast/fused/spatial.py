"""The fused SASE block's spatial map: mixer and excitation in one node.

SASE (arXiv 2411.08333). After the two spatial squeezes, the block computes
(docs/spec.md section 1)::

    s4 = relu(bn(w0 E3 + w1 E4))            the spatial mixer M
    s5 = E5(s4)                             (B, 1, H, W)

On CPU these (B, 1, H, W) maps are small, and the generic graph runs a dozen
operators with their autograd nodes on them (the mixer's scaled sum, BN,
ReLU, and E5's convolutions, ReLU and sigmoid): at the CIFAR shapes that
costs more than the arithmetic. Here they are one autograd Function over
the compiled ``mixer_forward`` / ``mixer_backward`` and, when E5 is a
convolution chain, ``chain_gate`` / ``chain_gate_backward`` kernels
(``../csrc/sase_fused.cpp``): the same values as the mixer module and the
chain (``map_conv``), its BN running statistics updated as
``nn.BatchNorm2d`` updates them. A second derivative (``create_graph``)
differentiates the plain formula (:meth:`_SpatialMap.reference`), so higher
derivatives stay exact.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ....layers.reference import reference_backward
from ..kernels import fused_kernels
from ..map_conv import (_ChainGate, _split_like, compiled_applies,
                        kernel_sizes)


def _bn_config(bn: nn.BatchNorm2d):
    """(whether the batch statistics are used, the update factor of the
    running ones) as ``nn.BatchNorm2d.forward`` chooses them; counts the
    batch where it does."""
    use_batch = bn.training or bn.running_mean is None
    factor = 0.0
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        factor = (1.0 / float(bn.num_batches_tracked)
                  if bn.momentum is None else bn.momentum)
    return use_batch, factor


class _SpatialMap(torch.autograd.Function):
    """s5 = chain(relu(bn(w0 a + w1 b))) (the chain absent: s4 itself).

    Inputs: a, b (B, 1, H, W), the BN module, whether its batch statistics
    are used, the update factor of its running statistics, the chain's
    kernel sizes (empty: no chain), then the mixer weight (1, 2, 1, 1),
    the BN weight and bias (None without affine) and the chain's kernels.
    """

    @staticmethod
    def forward(ctx, a, b, bn, use_batch, factor, sizes, w, gamma, beta,
                *kernels):
        k = fused_kernels()
        a, b = a.contiguous(), b.contiguous()
        # Updated in place in training mode (use_batch), read otherwise.
        rm, rv = bn.running_mean, bn.running_var
        s4, xhat, invstd = k.mixer_forward(
            a, b, w.reshape(2).contiguous(), gamma, beta, rm, rv, use_batch,
            factor, bn.eps)
        ctx.bn_eval = (None if use_batch else (rm.clone(), rv.clone()))
        ctx.eps, ctx.use_batch, ctx.sizes = bn.eps, use_batch, sizes
        out, chain = s4, ()
        if sizes:
            flat = (kernels[0].reshape(-1) if len(kernels) == 1 else
                    torch.cat([t.reshape(-1) for t in kernels])).contiguous()
            out, pre = k.chain_gate(s4, flat, list(sizes))
            chain = (flat, pre, out)
        ctx.save_for_backward(a, b, w, gamma, beta, xhat, s4, invstd, *chain,
                              *kernels)
        ctx.n_chain = len(chain)
        return out

    @staticmethod
    def reference(a, b, bn_eval, eps, use_batch, sizes, w, gamma, beta,
                  *kernels):
        """The plain formula (batch statistics, or the running ones
        ``bn_eval`` as they were at the forward), no buffer updates."""
        mix = torch.addcmul(w.view(2)[0] * a, w.view(2)[1], b)
        rm, rv = (None, None) if use_batch else bn_eval
        y = F.relu(F.batch_norm(mix, rm, rv, gamma, beta, use_batch, 0.0,
                                eps))
        return _ChainGate.reference(y, sizes, *kernels) if sizes else y

    @staticmethod
    def backward(ctx, grad):
        a, b, w, gamma, beta, xhat, s4, invstd, *rest = ctx.saved_tensors
        chain, kernels = rest[:ctx.n_chain], rest[ctx.n_chain:]
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph: exact higher derivatives
            got = reference_backward(
                _SpatialMap.reference,
                (a, b, ctx.bn_eval, ctx.eps, ctx.use_batch, ctx.sizes, w,
                 gamma, beta, *kernels), (grad, ), needs)
            return tuple(got)  # None for the constants
        k = fused_kernels()
        grad = grad.contiguous()
        g_kernels = [None] * len(kernels)
        if chain:
            flat, pre, gate = chain
            grad, gw = k.chain_gate_backward(grad, s4, pre, gate, flat,
                                             list(ctx.sizes), True)
            g_kernels = _split_like(gw, kernels)
        ga, gb, gw, gg, gbt = k.mixer_backward(
            grad, a, b, w.reshape(2).contiguous(), gamma, xhat, s4, invstd,
            ctx.use_batch)
        return (ga if needs[0] else None, gb if needs[1] else None, None,
                None, None, None, gw.view_as(w) if needs[6] else None,
                gg.view_as(gamma) if needs[7] else None,
                gbt.view_as(beta) if needs[8] else None, *g_kernels)


def fused_spatial_map(mixer: nn.Module, a: Tensor, b: Tensor,
                      kernels: Sequence[Tensor] = ()) -> Optional[Tensor]:
    """s5 = chain(mixer(a, b)) (or the mixer's output s4 without
    ``kernels``) in one autograd node, or None where it does not apply
    (the compiled kernels do not; a batch of one value, where
    ``nn.BatchNorm2d`` raises its own error).

    Args:
        mixer: the block's ``SpatialMixer`` (conv, BN, ReLU).
        a, b: (B, 1, H, W), E3's and E4's maps.
        kernels: E5's convolution chain, one kernel per layer (ReLU
            between), as :func:`conv_chain_gate` takes them.
    """
    if (not compiled_applies(a) or a.dtype != b.dtype or a.shape != b.shape
            or a.numel() <= 1):
        return None
    conv, bn = mixer[0], mixer[1]
    use_batch, factor = _bn_config(bn)
    sizes = kernel_sizes(kernels) if kernels else ()
    return _SpatialMap.apply(a, b, bn, use_batch, factor, sizes, conv.weight,
                             bn.weight, bn.bias, *kernels)
