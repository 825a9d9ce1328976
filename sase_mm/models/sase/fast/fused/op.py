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
type, its configuration and its identity) in a registry of live blocks,
and the implementations run that block's code with the parameter and
buffer arguments put in place of its own. A key whose block is gone (e.g.
an exported program loaded in another process, after importing
``sase_mm.models.sase``, which registers the operators) rebuilds the block
from the key, on the meta device. What a block's configuration is, and how
it is rebuilt, is the block's own: a block class registers itself here
(:func:`register_block`) and provides ``op_config()`` (a JSON-able dict)
and ``from_op_config(text)`` (a classmethod that parses and checks that
text, which comes from a file, before it builds anything); this module
imports no block.

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
from typing import Dict, List, Sequence, Tuple
from weakref import WeakValueDictionary

import torch
import torch.nn as nn
from torch import Tensor

from .node import (_fused_output, _plain_backward, _tape_backward,
                   _tape_forward, check_full_precision)

#: key -> live block (weak: the registry never keeps a block alive).
_BLOCKS: 'WeakValueDictionary[str, nn.Module]' = WeakValueDictionary()
#: block type name -> the block class that registered (:func:`register_block`).
_BLOCK_TYPES: Dict[str, type] = {}
#: the type and configuration part of a key -> a meta-device block, for keys
#: whose block is gone.
_TEMPLATES = {}


def register_block(cls: type) -> type:
    """Class decorator: lets the operators rebuild blocks of ``cls`` from
    their keys. ``cls`` provides ``op_config(self) -> dict`` (JSON-able)
    and the classmethod ``from_op_config(text: str)``, which parses and
    checks ``json.dumps`` of such a dict and builds the block (ValueError
    for anything else).

    Raises:
        TypeError: ``cls`` lacks either method, or another class of its
            name is registered already.
    """
    missing = [m for m in ('op_config', 'from_op_config')
               if not callable(getattr(cls, m, None))]
    if missing:
        raise TypeError(f'register_block: {cls.__name__} has no '
                        f'{" or ".join(missing)}')
    known = _BLOCK_TYPES.setdefault(cls.__name__, cls)
    if known is not cls:
        raise TypeError(f'register_block: a block type named '
                        f'{cls.__name__!r} is registered already '
                        f'({known.__module__}.{known.__qualname__})')
    return cls


def op_key(block: nn.Module) -> str:
    """The operators' name for ``block``, registered on the way.

    ``<type name>:<block.op_config() as JSON>#<id>`` for a block of a
    registered type, else ``#<id>`` (a live block only).
    """
    cls = type(block)
    config = ''
    if _BLOCK_TYPES.get(cls.__name__) is cls:
        config = f'{cls.__name__}:' + json.dumps(block.op_config(),
                                                 sort_keys=True)
    key = f'{config}#{id(block):x}'
    _BLOCKS[key] = block
    return key


# What ``torch.compiler.assume_constant_result`` sets (dynamo calls op_key
# at trace time and keeps the string as a constant, instead of tracing a
# dict write); set directly because that function imports torch._dynamo
# (over a second), which ``import sase_mm`` must not pay.
# tests/models/sase/fast/test_fused_op.py checks that the two agree.
op_key._dynamo_marked_constant = True


def _block_of(key: str) -> nn.Module:
    """The live block named by ``key``, else one rebuilt from its config.

    Raises:
        RuntimeError: no live block, and the key names no configuration.
        ValueError: the key names a type that is not registered, or its
            configuration is refused by the type's ``from_op_config``.
    """
    block = _BLOCKS.get(key)
    if block is not None:
        return block
    config = key.rpartition('#')[0]
    if not config:
        raise RuntimeError(
            f'sase_mm::fused_sase: no live block for key {key!r}, and the key '
            f'has no configuration to rebuild it from')
    if config not in _TEMPLATES:
        name, _, text = config.partition(':')
        cls = _BLOCK_TYPES.get(name)
        if cls is None:
            raise ValueError(
                f'sase_mm::fused_sase: the block key names the block type '
                f'{name!r:.40}, which is not registered (registered: '
                f'{sorted(_BLOCK_TYPES)}; importing sase_mm.models.sase '
                f'registers SASE)')
        with torch.device('meta'):  # every tensor is an operator argument
            _TEMPLATES[config] = cls.from_op_config(text)
    return _TEMPLATES[config]


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

    Raises:
        TypeError: a half-precision x or block (as ``fused_sase``).
    """
    check_full_precision(block, x)
    buffers = list(block.buffers())
    out, new = torch.ops.sase_mm.fused_sase(
        x, list(block.parameters()), buffers, op_key(block), block.training)
    for b, n in zip(buffers, new):
        b.copy_(n)
    return out
