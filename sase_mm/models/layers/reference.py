"""The plain reference of each hand-written autograd Function.

SASE (arXiv 2411.08333). The statistics (``stat_functions.py``), the
spatial L2-norm squeeze (``squeeze.py``) and the block output
(``sase/dag.py``) are autograd Functions with lean first-order backward
passes. Each also states its forward as a plain formula of differentiable
torch operators, its static ``reference``, which serves twice:

* higher derivatives: under ``create_graph=True`` a Function's backward
  differentiates its reference instead (:func:`reference_backward`), so
  second and higher derivatives are exact;
* export: while the layers are exportable (``config.py``), :func:`apply`
  runs the reference in place of the Function, which a tracing exporter
  could not see into.
"""
from typing import Callable, Sequence

import torch

from .config import is_exportable


def apply(function: type, *args):
    """``function.apply(*args)``, or, while the layers are exportable,
    ``function.reference(*args)``: the same values through plain operators.

    Args:
        function: a ``torch.autograd.Function`` subclass with a static
            ``reference`` taking the same arguments as its ``forward``.

    Raises:
        TypeError: exportable, and ``function`` has no ``reference``.
    """
    if not is_exportable():
        return function.apply(*args)
    reference = getattr(function, 'reference', None)
    if reference is None:
        raise TypeError(
            f'{function.__module__}.{function.__qualname__} has no plain '
            f'`reference` formula, so it cannot run while the layers are '
            f'exportable (layers.config.exportable())')
    return reference(*args)


def reference_backward(reference: Callable, inputs: Sequence,
                       grads: Sequence, needs_input_grad: Sequence[bool]):
    """Input gradients of ``reference(*inputs)`` through plain autograd.

    The lean backward passes are written for first derivatives. When a
    graph of the gradient is requested (``create_graph=True``: grad mode is
    on inside ``backward``), they call this instead: the forward is
    recomputed from the saved inputs with differentiable torch ops and
    differentiated with ``create_graph=True``, so second and higher
    derivatives are exact.

    Args:
        reference: the Function's plain forward.
        inputs: its saved inputs (tensors and constants), in order.
        grads: the gradients of its outputs (None for an unused output).
        needs_input_grad: the Function's ``ctx.needs_input_grad``.

    Returns:
        tuple: one gradient (or None) per input.
    """
    with torch.enable_grad():
        # Partial derivatives: each input enters the recomputation through
        # an alias of its own (a view, still differentiable w.r.t. the
        # input), so the gradient does not also flow along the paths by
        # which one input depends on another (e.g. a gate computed from x).
        inputs = [t.view_as(t) if isinstance(t, torch.Tensor)
                  and t.requires_grad else t for t in inputs]
        outs = reference(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs, )
    pairs = [(o, g) for o, g in zip(outs, grads)
             if g is not None and o is not None and o.requires_grad]
    wanted = [i for i, (t, need) in enumerate(zip(inputs, needs_input_grad))
              if need and isinstance(t, torch.Tensor) and t.requires_grad]
    result = [None] * len(inputs)
    if pairs and wanted:
        got = torch.autograd.grad([o for o, _ in pairs],
                                  [inputs[i] for i in wanted],
                                  [g for _, g in pairs], create_graph=True,
                                  allow_unused=True)
        for i, g in zip(wanted, got):
            result[i] = g
    return tuple(result)
