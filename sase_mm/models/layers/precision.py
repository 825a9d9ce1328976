"""The precision policy of the attention statistics: float32 in half models.

SASE (arXiv 2411.08333) squeezes a feature map by sums, fourth powers and
central moments, and so do the attention modules it is compared with
(variances, covariances, l2 norms). In half precision these overflow or
lose their digits, so the SASE blocks take them in float32 whatever the
input's dtype or the autocast state, and the zoo modules take them in
float32 for half-precision inputs outside autocast (docs/gpu.md, "Mixed
precision"). This module owns that policy: which dtypes count as half
precision (:data:`HALF_DTYPES`), the wrapper that runs a computation in
float32 (:func:`in_float32`), with the float32 casts of a half-precision
module's state in place (:func:`is_half`, :func:`float32_state`,
:func:`state_is_cast`), and the decorator of the zoo's forwards
(:func:`half_in_float32`).
"""
import functools
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn

#: Dtypes whose statistics are taken in float32 (mixed precision).
HALF_DTYPES = (torch.float16, torch.bfloat16)

# The modules whose state float32_state has replaced now. A list, not a
# ContextVar: torch.compile cannot trace ContextVar.set (a graph break in
# every block of a compiled half-precision model).
_CAST: List[nn.Module] = []


def _modules(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` and its descendants (as ``modules()``, without the names
    and the memo that make that one slow on a hot path)."""
    yield module
    for child in module._modules.values():
        if child is not None:
            yield from _modules(child)


def _half_state(module: nn.Module) -> List[Tuple[nn.Module, str, bool]]:
    """(owner, name, is_parameter) of every half-precision parameter and
    buffer of ``module``."""
    return [(m, name, is_param) for m in _modules(module)
            for is_param, tensors in ((True, m._parameters),
                                      (False, m._buffers))
            for name, t in tensors.items()
            if t is not None and t.dtype in HALF_DTYPES]


def is_half(module: nn.Module) -> bool:
    """Whether ``module`` is a half-precision module: whether its first
    parameter (or, without any, its first floating-point buffer) is
    float16 / bfloat16, as ``.half()`` and ``.to(torch.bfloat16)`` make all
    of them. One tensor is looked at, not all: the blocks ask on every call
    under autocast, where a full scan of a search block (hundreds of
    modules) would cost more than its small operators. A module whose
    first parameter is float32 and some other half (cast by hand) is taken
    to be float32, and torch then refuses the mixed dtypes loudly."""
    for m in _modules(module):
        for t in m._parameters.values():
            if t is not None:
                return t.dtype in HALF_DTYPES
    for m in _modules(module):
        for t in m._buffers.values():
            if t is not None and t.is_floating_point():
                return t.dtype in HALF_DTYPES
    return False


@contextmanager
def float32_state(module: nn.Module) -> Iterator[bool]:
    """Runs the body with ``module``'s half-precision state cast to float32.

    Every float16 / bfloat16 parameter is replaced by its float32 cast
    ``p.float()``, an autograd operation: the parameter itself stays where
    it is, in its dtype, and its gradient reaches it in that dtype. Every
    such buffer (BN running statistics) is replaced by a float32 copy,
    which a module in training mode writes back into the buffer at the end
    (float32 holds every half-precision value, so an unchanged buffer comes
    back as it was). Tied tensors are cast once. Float32 / float64 state is
    left as it is.

    The swap is ``torch.func.functional_call``'s (an entry of the owner's
    ``_parameters`` / ``_buffers``), written out here because that function
    calls the module again (its hooks would run twice) and its context
    manager, ``torch.nn.utils.stateless._reparametrize_module``, is
    private. Like it, the swap is not thread-safe: a module is run by one
    thread at a time.

    Yields:
        bool: whether any state was cast (the module is then in
        :func:`state_is_cast` until the end of the body).
    """
    entries = _half_state(module)
    if not entries:
        yield False
        return
    casts, originals = {}, []
    for m, name, is_param in entries:
        table = m._parameters if is_param else m._buffers
        t = table[name]
        if id(t) not in casts:
            casts[id(t)] = t.float() if is_param else t.detach().float()
        originals.append((m, table, name, t, casts[id(t)]))
        table[name] = casts[id(t)]
    _CAST.append(module)
    done = False
    try:
        yield True
        done = True
    finally:
        _CAST.remove(module)  # (not pop: another thread may have added)
        for m, table, name, t, cast in originals:
            table[name] = t
        if done:
            with torch.no_grad():
                for m, table, name, t, cast in originals:
                    if table is m._buffers and m.training:
                        t.copy_(cast)


def state_is_cast(module: nn.Module) -> bool:
    """Whether ``module``'s half-precision state is replaced by float32
    casts now (inside :func:`float32_state` of it or of a module holding
    it): its parameters are then not its own tensors."""
    return bool(_CAST) and any(
        m is module or any(s is module for s in _modules(m)) for m in _CAST)


def in_float32(fn: Callable[[torch.Tensor], torch.Tensor],
               x: torch.Tensor,
               module: Optional[nn.Module] = None,
               under_autocast: bool = True) -> torch.Tensor:
    """``fn(x)`` with every statistic accumulated in float32.

    For a float16 / bfloat16 x, or under autocast (``under_autocast``),
    ``fn`` runs on x cast to float32 with autocast off for x's device, and
    its result comes back in x's dtype. When ``module`` is a
    half-precision module (:func:`is_half`: ``.half()``,
    ``.to(torch.bfloat16)``), its parameters and buffers are float32 casts
    for the call (:func:`float32_state`), so every operation of ``fn``
    sees float32 operands. Why: a float16 fourth
    power overflows above 65504^(1/4) (about 16), squares above 256 (a
    variance or a covariance of activations of 1e3 does), sums of B*H*W
    half-precision values lose most of their digits (bfloat16 keeps 8
    significant bits), and the moments of std and skew pooling cancel. The
    attention blocks are memory-bound and small beside the convolutions
    around them, so the cast costs one read and one write of x. Otherwise
    (float32 / float64 x, no autocast) it is ``fn(x)``, unchanged, and the
    module's state is not looked at (a half-precision module given a
    float32 x fails in torch's dtype checks, as torch's own layers do).

    Args:
        fn: the computation, a tensor to a tensor (e.g. a block's forward).
        x (Tensor): its input, any shape.
        module: the module whose parameters and buffers ``fn`` reads.
        under_autocast: whether autocast alone starts the float32 region
            (the SASE blocks). False (the zoo) leaves a module under
            autocast to autocast's per-operator policy, as before.

    Returns:
        Tensor: ``fn``'s result, in x's dtype.
    """
    device = x.device.type
    if x.dtype not in HALF_DTYPES:
        if not (under_autocast and torch.is_autocast_enabled(device)):
            return fn(x)
    elif not under_autocast and torch.is_autocast_enabled(device):
        return fn(x)
    with torch.autocast(device, enabled=False):
        if module is None or not is_half(module):
            out = fn(x.float())
        else:
            with float32_state(module):
                out = fn(x.float())
    return out.to(x.dtype)


def half_in_float32(forward: Callable) -> Callable:
    """Decorator of a module's ``forward(self, x)``: :func:`in_float32`
    of it, with the module's state, outside autocast only. How the zoo
    modules run in a ``.half()`` / ``.to(torch.bfloat16)`` model: their
    statistics (variances, covariances, l2 norms of activations up to 1e3)
    would overflow float16, so they run in float32 and return x's dtype;
    under autocast they run as autocast runs them, as before."""

    @functools.wraps(forward)
    def wrapped(self, x: torch.Tensor) -> torch.Tensor:
        return in_float32(functools.partial(forward, self), x, self,
                          under_autocast=False)

    return wrapped
