"""The fused SASE block as a PyTorch operator, for torch.compile and export.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333). ``node.py`` runs the fixed block as one autograd node in
eager mode; a compiler cannot see into that node (it holds the module and a
tape of Python objects between forward and backward). This module owns the
same computation as two operators of the ``torch.library`` registry:

* ``sase_mm::fused_sase(x, params, buffers, key, training)``
  -> ``(out, new_buffers)``: the block output and, in training mode, the
  updated BN running statistics (empty list otherwise);
* ``sase_mm::fused_sase_backward(grad, x, params, buffers, key, training,
  needs)`` -> the gradients of x and of the parameters that ``needs`` asks
  for.

Each has a fake implementation (shapes only), so ``torch.compile`` (static
and dynamic shapes) and ``torch.export`` record one node per block, without
a graph break. The forward's autograd formula calls the backward operator,
which recomputes the tape from the saved x and runs the node's own
``_tape_backward``: no Python state survives between the two, as AOT
autograd requires. Inside, dispatch is the node's (``dispatch.py``): on CPU
the compiled kernels, elsewhere the PyTorch closed forms.

The operators take tensors, not the module: ``key`` names the block (its
constructor arguments and its identity) in a registry of live blocks, and
the implementations run that block's code with the parameter and buffer
arguments put in place of its own. A key whose block is gone (e.g. an
exported program loaded in another process, after importing
``sase_mm.models.sase``, which registers the operators) rebuilds the block
from the constructor arguments in the key, on the meta device.

The operators are functional: a custom operator with a registered autograd
formula may not mutate its arguments, so the BN update is an output, which
:func:`fused_sase_op` copies into the buffers (once per forward; the
backward recomputes on copies).

Higher derivatives: in eager mode a backward with ``create_graph=True``
recomputes the block through the generic graph, so they stay exact; AOT
autograd (``torch.compile``) does not support double backward at all.
"""
import json
from contextlib import contextmanager
from typing import List, Sequence, Tuple
from weakref import WeakValueDictionary

import torch
import torch.nn as nn
from torch import Tensor

from .node import (_fused_output, _plain_backward, _tape_backward,
                   _tape_forward)

#: key -> live block (weak: the registry never keeps a block alive).
_BLOCKS: 'WeakValueDictionary[str, nn.Module]' = WeakValueDictionary()
#: constructor arguments (JSON) -> a meta-device block, for keys whose block
#: is gone.
_TEMPLATES = {}


def op_key(block: nn.Module) -> str:
    """The operators' name for ``block``, registered on the way.

    ``<constructor arguments as JSON>#<id>``; the arguments are
    ``block._op_config`` (``SASE`` sets it), empty when absent.
    """
    config = getattr(block, '_op_config', None)
    key = (json.dumps(config, sort_keys=True) if config else '') + \
        f'#{id(block):x}'
    _BLOCKS[key] = block
    return key


# What ``torch.compiler.assume_constant_result`` sets (dynamo calls op_key
# at trace time and keeps the string as a constant, instead of tracing a
# dict write); set directly because that function imports torch._dynamo
# (over a second), which ``import sase_mm`` must not pay.
# tests/models/sase/fast/test_fused_op.py checks that the two agree.
op_key._dynamo_marked_constant = True


def _block_of(key: str) -> nn.Module:
    """The live block named by ``key``, else one rebuilt from its config."""
    block = _BLOCKS.get(key)
    if block is not None:
        return block
    config = key.rpartition('#')[0]
    if not config:
        raise RuntimeError(
            f'sase_mm::fused_sase: no live block for key {key!r}, and the key '
            f'has no constructor arguments to rebuild it from')
    if config not in _TEMPLATES:
        from ...block import SASE
        kwargs = _parse_config(config)
        with torch.device('meta'):  # every tensor is an operator argument
            _TEMPLATES[config] = SASE(**kwargs, fused=False)
    return _TEMPLATES[config]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


#: What a key's constructor arguments may hold (``SASE._op_config``), as
#: (check, what is valid). A key comes from an exported program, i.e. a
#: file: it is parsed and checked, never handed over as it stands (a
#: genotype string, for one, would be read as a path).
_CONFIG_FIELDS = {
    'in_channels': (_is_int, 'a positive int'),
    'genotype': (lambda v: isinstance(v, list) and all(
        isinstance(o, str) for o in v), 'a list of operation names'),
    'spatial_size': (lambda v: isinstance(v, list) and len(v) == 2 and all(
        _is_int(n) for n in v), '[H, W] of positive ints'),
    'fc_sigmoid': (lambda v: isinstance(v, bool), 'true or false'),
}


def _parse_config(config: str) -> dict:
    """The SASE constructor arguments in a key, checked field by field.

    Raises:
        ValueError: not a JSON object of exactly :data:`_CONFIG_FIELDS`'s
            fields, or a field that is not what it must be.
    """
    where = 'sase_mm::fused_sase: the block key\'s constructor arguments'
    try:
        kwargs = json.loads(config)
    except ValueError as e:
        raise ValueError(f'{where} are not JSON ({e})') from None
    if not isinstance(kwargs, dict) or set(kwargs) != set(_CONFIG_FIELDS):
        got = (sorted(kwargs) if isinstance(kwargs, dict) else
               type(kwargs).__name__)
        raise ValueError(f'{where} must be a JSON object with exactly the '
                         f'fields {sorted(_CONFIG_FIELDS)}, got {got}')
    for name, (ok, valid) in _CONFIG_FIELDS.items():
        if not ok(kwargs[name]):
            raise ValueError(f'{where}: {name} must be {valid}, got '
                             f'{kwargs[name]!r:.80}')
    return kwargs


@contextmanager
def _substituted(block: nn.Module, params: Sequence[Tensor],
                 buffers: Sequence[Tensor], training: bool):
    """Runs the body with ``params`` and ``buffers`` (in the order of
    ``block.parameters()`` / ``block.buffers()``) in place of the block's
    own, in train or eval mode; restores all."""
    swaps = []
    for kind, tensors in (('_parameters', params), ('_buffers', buffers)):
        slots = [(getattr(m, kind), n) for m in block.modules()
                 for n, t in getattr(m, kind).items() if t is not None]
        if len(slots) != len(tensors):
            raise ValueError(
                f'sase_mm::fused_sase: the block has {len(slots)} '
                f'{kind[1:]}, the operator got {len(tensors)}')
        swaps += [(d, n, t) for (d, n), t in zip(slots, tensors)]
    saved = [(d, n, d[n]) for d, n, _ in swaps]
    modes = [(m, m.training) for m in block.modules()]
    for d, n, t in swaps:
        d[n] = t
    block.train(training)
    try:
        yield
    finally:
        for d, n, t in saved:
            d[n] = t
        for m, mode in modes:
            m.training = mode


_AUTOGRAD_KEYS = (torch._C.DispatchKey.AutogradFunctionality,
                  torch._C.DispatchKey.AutogradOther,
                  torch._C.DispatchKey.AutogradNestedTensor,
                  torch._C.DispatchKey.ADInplaceOrView)


@contextmanager
def _autograd_enabled():
    """Autograd inside an operator implementation.

    The dispatcher runs an implementation below the Autograd keys (they are
    in the thread's exclude set), so ``enable_grad`` alone records nothing
    and ``torch.autograd.grad`` of the small graph would fail. The backward
    operator needs that graph (the excitations' and mixer's own backward),
    so it lifts the exclusion for its body.
    """
    include = torch._C._dispatch_tls_local_include_set()
    exclude = torch._C._dispatch_tls_local_exclude_set()
    for k in _AUTOGRAD_KEYS:
        exclude = exclude.remove(k)
    with torch._C._ForceDispatchKeyGuard(include, exclude), \
            torch.enable_grad():
        yield


def _like(t: Tensor, ref: Tensor) -> Tensor:
    """t with the strides ``torch.empty_like(ref)`` has (what the fake
    implementations promise); copies only when they differ (e.g. the
    kernels' contiguous result for a channels_last x)."""
    if t.stride() == ref.stride():
        return t
    out = torch.empty_like(ref)
    return t if out.stride() == t.stride() else out.copy_(t)


# --------------------------------------------------------------------------
# sase_mm::fused_sase
# --------------------------------------------------------------------------
@torch.library.custom_op('sase_mm::fused_sase', mutates_args=())
def _fused_sase(x: Tensor, params: List[Tensor], buffers: List[Tensor],
                key: str, training: bool) -> Tuple[Tensor, List[Tensor]]:
    """The block ``key`` on x (B, C, H, W) -> ((B, C, H, W) in x's layout,
    updated copies of ``buffers`` in training mode, else [])."""
    block = _block_of(key)
    # BN updates the copies; they are returned, the arguments stay as given.
    new = [b.clone() for b in buffers] if training else []
    with _substituted(block, params, new if training else buffers, training):
        out = _fused_output(block, x)[3]
    return _like(out, x), new


@_fused_sase.register_fake
def _(x, params, buffers, key, training):
    return (torch.empty_like(x),
            [torch.empty_like(b) for b in buffers] if training else [])


def _setup_context(ctx, inputs, output):
    x, params, buffers, key, training = inputs
    ctx.mark_non_differentiable(*output[1])
    # Copies: the buffers are updated in place after this forward (and by
    # later ones); the backward recomputation needs them as they were.
    ctx.save_for_backward(x, *params, *[b.clone() for b in buffers])
    ctx.n_params, ctx.key, ctx.training = len(params), key, training


def _backward(ctx, grad, _buffer_grads):
    x, *rest = ctx.saved_tensors
    params, buffers = rest[:ctx.n_params], rest[ctx.n_params:]
    need_x, need_params = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    nones = [None] * len(buffers)
    if torch.is_grad_enabled():  # create_graph=True: exact, generic graph
        grad_x, param_grads = _generic_grads(ctx.key, x, params, buffers,
                                             ctx.training, grad, need_x,
                                             need_params)
        return grad_x, param_grads, nones, None, None
    got = iter(_fused_sase_backward(grad, x, params, buffers, ctx.key,
                                    ctx.training, [need_x, *need_params]))
    grad_x = next(got) if need_x else None
    return (grad_x, [next(got) if n else None for n in need_params], nones,
            None, None)


_fused_sase.register_autograd(_backward, setup_context=_setup_context)


def _generic_grads(key, x, params, buffers, training, grad, need_x,
                   need_params):
    """dL/dx and dL/dparams through the generic graph, differentiable
    (``create_graph=True``): the node's own double backward
    (``node._plain_backward``, which recomputes on copies of the BN
    buffers), run on the block with the saved tensors in place; a wanted
    gradient the output does not reach is zero."""
    block = _block_of(key)
    needs = [need_x, *need_params]
    with _substituted(block, params, buffers, training):
        got = _plain_backward(block, x, params, grad,
                              (need_x, False, *need_params))
    result = [torch.zeros_like(t) if n and g is None else g
              for t, g, n in zip([x, *params], got, needs)]
    return result[0], result[1:]


# --------------------------------------------------------------------------
# sase_mm::fused_sase_backward
# --------------------------------------------------------------------------
@torch.library.custom_op('sase_mm::fused_sase_backward', mutates_args=())
def _fused_sase_backward(grad: Tensor, x: Tensor, params: List[Tensor],
                         buffers: List[Tensor], key: str, training: bool,
                         needs: List[bool]) -> List[Tensor]:
    """Gradients of block ``key`` for the output gradient ``grad``
    (B, C, H, W): ``needs`` (x, then each parameter) says which; returned
    in that order, each laid out like its input."""
    block = _block_of(key)
    need_x, need_params = needs[0], needs[1:]
    # Constants of the small graph: with autograd on, x (saved with its
    # requires_grad in eager mode) would otherwise drag the closed forms
    # into a graph of their own.
    x, grad = x.detach(), grad.detach()
    with _autograd_enabled():
        leaves = [p.detach().requires_grad_(n)
                  for p, n in zip(params, need_params)]
        # The recomputation sees the forward's BN statistics and updates
        # copies: running statistics change once per forward.
        spare = [b.clone() for b in buffers]
        with _substituted(block, leaves, spare, training):
            tape, (s2, s5) = _tape_forward(block, x)
            grad_x, param_grads = _tape_backward(
                tape, s2, s5, x, leaves, grad, (need_x, False, *need_params))
    out = [_like(grad_x, x)] if need_x else []
    out += [_like(torch.zeros_like(p) if g is None else g, p)
            for p, g, n in zip(params, param_grads, need_params) if n]
    return out


@_fused_sase_backward.register_fake
def _(grad, x, params, buffers, key, training, needs):
    return ([torch.empty_like(x)] if needs[0] else []) + [
        torch.empty_like(p) for p, n in zip(params, needs[1:]) if n]


# --------------------------------------------------------------------------
def fused_sase_op(block: nn.Module, x: Tensor) -> Tensor:
    """Runs the fixed ``block`` on x (B, C, H, W) as one operator call
    (what ``SASE`` does under torch.compile and torch.export); in training
    mode the BN running statistics are updated from its result.

    Returns:
        Tensor: (B, C, H, W), x's dtype and layout.
    """
    buffers = list(block.buffers())
    out, new = torch.ops.sase_mm.fused_sase(
        x, list(block.parameters()), buffers, op_key(block), block.training)
    for b, n in zip(buffers, new):
        b.copy_(n)
    return out
