"""The fused SASE block's autograd Function.

SASE (arXiv 2411.08333); the maths is in the package docstring. The forward
records the statistics on a tape (``tape.py``) and computes the output; the
backward differentiates the small graph and assembles dL/dx
(``input_grad.py`` or, on CPU, the kernels via ``dispatch.py``). This module
also owns the edge cases: a second backward through a retained graph
recomputes the tape; a double backward (``create_graph=True``) recomputes
through the generic graph; both recompute on copies of the BN buffers, so
running statistics are updated once per forward.
"""
from contextlib import contextmanager

import torch
import torch.nn as nn

from ....layers.precision import HALF_DTYPES, is_half
from ...dag import residual, residual_factors, residual_map_grads, sase_maps
from .dispatch import _kernel_input_grad, _rows, kernels_for
from .input_grad import _input_grad
from .tape import _Tape


class _FusedSASE(torch.autograd.Function):
    """out = SASE(x) as one node; see the module docstring.

    Inputs: x (B, C, H, W), the block, then the block's parameters that
    require gradients (so that autograd routes their gradients here).

    Memory: besides x it keeps only the small graph (and, without the
    compiled kernels, x^4 when E3 is L4 pooling); not the full-size factor
    ``1 + s2 / 2 + s5 / 2``. The first backward pass frees them; another
    one (``retain_graph=True``) recomputes them from the saved x, on copies
    of the BN buffers, and gives the same values.
    """

    @staticmethod
    def forward(ctx, x, block, *params):
        tape, s2, s5, out = _fused_output(block, x)
        ctx.block, ctx.state = block, (tape, s2, s5)
        ctx.save_for_backward(x, *params)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, *params = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: plain autograd
            grad_x, *param_grads = _plain_backward(
                ctx.block, x, params, grad, ctx.needs_input_grad)
            return (grad_x, None, *param_grads)
        state, ctx.state = ctx.state, None  # freed after this pass
        if state is None:  # a second backward through a retained graph
            with _spare_buffers(ctx.block):
                tape, (s2, s5) = _tape_forward(ctx.block, x.detach())
        else:
            tape, s2, s5 = state
        grad_x, param_grads = _tape_backward(tape, s2, s5, x, params, grad,
                                             ctx.needs_input_grad)
        return (grad_x, None, *param_grads)


def _tape_forward(block: nn.Module, x: torch.Tensor):
    """The maps (s2, s5) of ``block`` on x, from statistics on a tape."""
    kernels = kernels_for(x)
    xd = x.detach()
    tape = _Tape(xd.contiguous() if kernels is not None else xd, kernels)
    with torch.enable_grad():
        maps = sase_maps(tape.x, block.edge_fn, block.mixer,
                         stats=tape.stats, gated=tape.gated,
                         spatial=getattr(block, 'spatial_map', None))
    return tape, maps


def _fused_output(block: nn.Module, x: torch.Tensor):
    """(tape, s2, s5, out): the tape of ``block`` on x, its maps and the
    block output x * (1 + s2 / 2 + s5 / 2) (by the ``scale`` kernel where
    the kernels run). Shared with the operator form (``op.py``)."""
    tape, (s2, s5) = _tape_forward(block, x)
    if tape.kernels is not None:
        # (B, C, H, W) already: a view here would forbid ``out += id``.
        return tape, s2, s5, tape.kernels.scale(
            tape.x, *_rows(s2.detach(), s5.detach()))
    return tape, s2, s5, residual(
        x, *residual_factors(s2.detach(), s5.detach()))


def _tape_backward(tape: _Tape, s2, s5, x, params, grad, needs_input_grad):
    """(dL/dx, gradients of ``params``) from the output gradient ``grad``:
    the maps' gradients, the small graph's backward, then the closed forms
    (``needs_input_grad`` as the Function's: x, block, params)."""
    entries, kernels = tape.entries, tape.kernels
    b, c, h, w = x.shape
    if kernels is not None:
        grad = grad.contiguous()
        buf = None
        gs2, gs5 = kernels.grad_dots(grad, tape.x)
        gs2, gs5 = gs2.view(b, c, 1, 1), gs5.view(b, 1, h, w)
    else:
        buf, gs2, gs5 = residual_map_grads(grad, x, (b, c, 1, 1),
                                           (b, 1, h, w))
    want_x = needs_input_grad[0]
    outs = [o for e in entries for o in e.outs] if want_x else []
    wanted = [p for p, need in zip(params, needs_input_grad[2:]) if need]
    got = torch.autograd.grad([s2, s5], outs + wanted, [gs2, gs5],
                              allow_unused=True)
    tape.release()  # x^4 goes before the full-size temporaries come
    grad_x = None
    if want_x:
        terms, k = [], 0
        for e in entries:  # each statistic's closed form, in tape order
            gs = got[k:k + len(e.outs)]
            k += len(e.outs)
            if any(g is not None for g in gs):
                terms += e.terms(gs)
        if kernels is not None:
            grad_x = _kernel_input_grad(kernels, grad, tape.x, s2.detach(),
                                        s5.detach(), terms)
        if grad_x is None:
            a, bn = residual_factors(s2.detach(), s5.detach())
            grad_x = _input_grad(x, residual(grad, a, bn, out=buf), terms)
        grad_x = grad_x.view_as(x)
    param_grads = iter(got[len(outs):])
    return grad_x, tuple(next(param_grads) if need else None
                         for need in needs_input_grad[2:])


@contextmanager
def _spare_buffers(block: nn.Module):
    """Runs the body with copies of the block's buffers in place, so that a
    recomputed forward does not update BN running statistics a second time
    (the originals are swapped back, not written: BN may have saved them
    for its backward)."""
    originals = [(m, name, t) for m in block.modules()
                 for name, t in m._buffers.items() if t is not None]
    for m, name, t in originals:
        m._buffers[name] = t.clone()
    try:
        yield
    finally:
        for m, name, t in originals:
            m._buffers[name] = t


def _plain_backward(block: nn.Module, x: torch.Tensor, params, grad,
                    needs_input_grad) -> tuple:
    """Gradients of x and ``params`` through the generic graph, with
    ``create_graph=True``. The forward is recomputed on copies of the
    buffers, so BN running statistics are updated once per forward, as
    without fusion."""
    with _spare_buffers(block), torch.enable_grad():
        out = block.forward_generic(x)
    inputs = [x] + list(params)
    wanted = [i for i, t in enumerate(inputs)
              if needs_input_grad[0 if i == 0 else i + 1] and t.requires_grad]
    got = torch.autograd.grad(out, [inputs[i] for i in wanted], grad,
                              create_graph=True, allow_unused=True)
    result = [None] * len(inputs)
    for i, g in zip(wanted, got):
        result[i] = g
    return tuple(result)


def check_full_precision(block: nn.Module, x: torch.Tensor) -> None:
    """Refuses a float16 / bfloat16 x or block.

    The node takes its statistics (fourth powers, central moments) in x's
    dtype, and the compiled kernels are float32 / float64 only; the block's
    own forward (``SASE.forward``) runs a half-precision input or block in
    float32 before it gets here (``layers/precision.in_float32``).

    Raises:
        TypeError: x or the block's parameters are half precision.
    """
    if x.dtype in HALF_DTYPES:
        got = f'a {x.dtype} input'
    elif is_half(block):
        got = 'a half-precision block'
    else:
        return
    raise TypeError(f'the fused SASE node runs in float32 or float64, got '
                    f'{got}; call the block itself (SASE.forward), which '
                    f'runs half precision in float32')


def fused_sase(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Runs the fixed ``block`` on x (B, C, H, W) as one autograd node.

    ``block`` provides ``edge_fn``, ``mixer`` and ``forward_generic``.

    Raises:
        TypeError: a half-precision x or block (:func:`check_full_precision`).
    """
    check_full_precision(block, x)
    params = [p for p in block.parameters() if p.requires_grad]
    return _FusedSASE.apply(x, block, *params)
