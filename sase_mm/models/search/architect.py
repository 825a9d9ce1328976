"""The DARTS architect: the architecture gradient of one search iteration.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333) searches its block with DARTS (Liu et al., Differentiable
Architecture Search, ICLR 2019). This module owns the calculus of the alpha
step (docs/spec.md section 3), as pure functions of a search model and its
batches: they read the model's parameters, buffers and optimizer state and
change none of them, nor any ``.grad``.

* First order: ``grad_alpha L_val(w, alpha)``.
* Second order: the virtual SGD step
  ``w' = w - xi * (mu * buf + grad_w L_train(w, alpha) + wd * w)``
  (:func:`virtual_sgd_step`, the weight optimizer's real lr, momentum,
  momentum buffer and weight decay), then
  ``grad_alpha L_val(w', alpha) - H u`` with ``v = grad_w' L_val(w', alpha)``,
  ``u = xi * v`` and the mixed Hessian-vector product ``H u`` a central
  difference of ``grad_alpha L_train`` at ``w +- eps * u``,
  ``eps = fd_radius / ||u||`` (:func:`hessian_vector_product`).

Every gradient is taken with ``torch.autograd.grad``, outside the forward
passes' ``context`` (the weight optim wrapper's ``optim_context``: autocast
under AMP, which PyTorch and mmengine keep off the backward pass); w', w+
and w- are evaluated with ``torch.func.functional_call`` (no copy of the
model), and all these passes run on scratch copies of the BatchNorm buffers
(:func:`scratch_buffers`), so that only the weight step updates the running
statistics. The gradients are averaged across ranks (``grad_sync``).

The model is a ``DARTSSearch``-like object: ``supernet`` (the weights),
``alphas``, ``mix()`` (softmax(alpha) with its graph), ``order``,
``fd_radius`` and ``batch_loss(batch, mix, params=None, buffers=None)`` (the
loss of the supernet, with the parameters and buffers substituted).
"""
from contextlib import nullcontext
from typing import (Callable, ContextManager, Dict, List, Optional,
                    Sequence, Tuple)

import torch

from .grad_sync import all_reduce_mean

Batch = Dict[str, torch.Tensor]
Buffers = Dict[str, torch.Tensor]
#: A zero-argument factory of the context the forward passes run in.
Context = Callable[[], ContextManager]


def scratch_buffers(model) -> Buffers:
    """Copies of the supernet's buffers (BN statistics), by name, for the
    alpha step's passes to update and the step to discard."""
    return {n: b.clone() for n, b in model.supernet.named_buffers()}


def alpha_gradient(model, train: Batch, search: Batch,
                   weight_optimizer: torch.optim.Optimizer,
                   context: Context = nullcontext
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The architecture gradient of this iteration, of ``model.order``.

    Args:
        model: the search model (module docstring).
        train: the weight-half batch, ``dict(inputs=(B, C, H, W),
            data_samples=(B,))`` (used by order 2 only).
        search: the alpha-half batch, same form.
        weight_optimizer: the weights' ``torch.optim.SGD`` (order 2 unrolls
            one step of it).
        context: the forward passes run in ``context()`` (autocast under
            AMP), the gradients outside it; the finite-difference passes
            run in float32 regardless.

    Returns:
        (grad_alpha (6, 7), loss on the search batch (detached): at w' for
        order 2, at w for order 1).
    """
    buffers = scratch_buffers(model)
    if model.order == 1:
        return first_order_gradient(model, search, buffers, context)
    return second_order_gradient(model, train, search, weight_optimizer,
                                 buffers, context)


def first_order_gradient(model, search: Batch,
                         buffers: Optional[Buffers] = None,
                         context: Context = nullcontext
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``grad_alpha L_val(w, alpha)``, (6, 7), and the search loss."""
    if buffers is None:
        buffers = scratch_buffers(model)
    with context():
        loss_s = model.batch_loss(search, model.mix(), None, buffers)
    (grad, ) = torch.autograd.grad(loss_s, [model.alphas])
    return all_reduce_mean([grad])[0], loss_s.detach()


def second_order_gradient(model, train: Batch, search: Batch,
                          weight_optimizer: torch.optim.Optimizer,
                          buffers: Optional[Buffers] = None,
                          context: Context = nullcontext
                          ) -> Tuple[torch.Tensor, torch.Tensor]:
    """DARTS's second-order gradient (module docstring), (6, 7), and the
    search loss at w'."""
    if buffers is None:
        buffers = scratch_buffers(model)
    names, params = zip(*model.supernet.named_parameters())
    # The virtual step's gradient is taken at the current alpha, which it
    # does not differentiate.
    with torch.no_grad():
        mix = model.mix()
    with context():
        loss_t = model.batch_loss(train, mix, None, buffers)
    grads = _zeros_for_unused(
        torch.autograd.grad(loss_t, params, allow_unused=True), params)
    grads = all_reduce_mean(grads)
    virtual, lrs = virtual_sgd_step(params, grads, weight_optimizer)
    virtual = [t.requires_grad_() for t in virtual]
    # Each weight-sized list is dropped as soon as it is used: the Faster
    # R-CNN supernet's weights are ~210 MB (53 M float32), and every copy
    # alive raises the step's peak.
    del grads, loss_t

    with context():
        loss_s = model.batch_loss(search, model.mix(),
                                  dict(zip(names, virtual)), buffers)
    grad_alpha, *v = _zeros_for_unused(
        torch.autograd.grad(loss_s, [model.alphas] + virtual,
                            allow_unused=True), [model.alphas] + virtual)
    grad_alpha, *v = all_reduce_mean([grad_alpha] + v)
    del virtual

    # d w'/d alpha = -xi * d^2 L_train / (d w d alpha): its product with v is
    # taken along u = xi * v (xi per parameter group; for one lr this is
    # docs/spec.md's eps = 0.01 / ||v|| with the factor xi outside).
    with torch.no_grad():  # in place: v is not needed after
        u = [t.mul_(lr) for lr, t in zip(lrs, v)]
    del v
    hvp = hessian_vector_product(model, train, u, model.fd_radius, buffers)
    if hvp is None:  # v = 0: no Hessian term
        return grad_alpha, loss_s.detach()
    hvp = all_reduce_mean([hvp])[0]
    return grad_alpha - hvp, loss_s.detach()


def hessian_vector_product(model, batch: Batch,
                           direction: Sequence[torch.Tensor],
                           fd_radius: float,
                           buffers: Optional[Buffers] = None
                           ) -> Optional[torch.Tensor]:
    """The mixed second derivative of the loss along a weight direction.

    ``d/d alpha (grad_w L(w, alpha) . u)`` by the central difference
    ``(grad_alpha L(w + eps u) - grad_alpha L(w - eps u)) / (2 eps)`` with
    ``eps = fd_radius / ||u||``, so the weights move by ``fd_radius``.

    Args:
        model: the search model (module docstring).
        batch: the batch of L (the train batch in DARTS).
        direction: u, one tensor per supernet parameter, in
            ``named_parameters()`` order, same shapes.
        fd_radius (float): ``eps * ||u||`` (0.01 in DARTS).
        buffers: scratch buffers (default: fresh copies).

    Returns:
        (6, 7), or None when ``||u|| = 0``.
    """
    if buffers is None:
        buffers = scratch_buffers(model)
    names, params = zip(*model.supernet.named_parameters())
    with torch.no_grad():
        norm = torch.sqrt(sum((t * t).sum() for t in direction))
    if norm.item() == 0:
        return None
    eps = fd_radius / norm
    grads = []
    # In float32 even under mixed precision (AmpOptimWrapper's autocast):
    # the weights move by eps * u, about 1e-4 of their size, which a
    # half-precision cast of them (float16 10 bits, bfloat16 7 bits of
    # mantissa) rounds away, and the difference of two half-precision
    # gradients is rounding noise.
    with torch.autocast(params[0].device.type, enabled=False):
        for sign in (1., -1.):
            with torch.no_grad():
                moved = {n: p + (sign * eps) * t
                         for n, p, t in zip(names, params, direction)}
            loss = model.batch_loss(batch, model.mix(), moved, buffers)
            grads.append(torch.autograd.grad(loss, [model.alphas])[0])
            del moved, loss  # before the other side's copy is made
    return (grads[0] - grads[1]) / (2 * eps)


def _zeros_for_unused(grads, tensors) -> List[torch.Tensor]:
    # A parameter the loss does not reach has a zero gradient.
    return [torch.zeros_like(t) if g is None else g
            for g, t in zip(grads, tensors)]


def virtual_sgd_step(params: Sequence[torch.Tensor],
                     grads: Sequence[torch.Tensor],
                     optimizer: torch.optim.Optimizer
                     ) -> Tuple[List[torch.Tensor], List[float]]:
    """The weights one step of ``optimizer`` (SGD) would give, not applied.

    ``w' = w - lr * (momentum * buf + grad + weight_decay * w)`` with each
    parameter's group settings and momentum buffer (0 before the first real
    step), i.e. exactly what ``torch.optim.SGD.step`` computes.

    Args:
        params: the weights, any shapes.
        grads: their gradients, same shapes.
        optimizer: the ``torch.optim.SGD`` holding every one of ``params``
            (without nesterov, dampening or maximize).

    Returns:
        (new detached tensors, same shapes; the lr of each parameter).
    """
    if not isinstance(optimizer, torch.optim.SGD):
        raise ValueError(
            f'second-order DARTS unrolls one SGD step of the weights, but '
            f'the `weights` optimizer is {type(optimizer).__name__}; use '
            f'SGD or order=1')
    group_of = {id(p): g for g in optimizer.param_groups
                for p in g['params']}
    out, lrs = [], []
    with torch.no_grad():
        for p, g in zip(params, grads):
            group = group_of.get(id(p))
            if group is None:
                raise ValueError('a supernet parameter is missing from the '
                                 '`weights` optimizer')
            if group.get('nesterov') or group.get('dampening', 0) or \
                    group.get('maximize'):
                raise ValueError('the virtual step supports SGD without '
                                 'nesterov, dampening or maximize')
            lr = float(group['lr'])
            d = g
            if group.get('weight_decay', 0):
                d = d + group['weight_decay'] * p
            buf = optimizer.state.get(p, {}).get('momentum_buffer')
            if group.get('momentum', 0) and buf is not None:
                d = d + group['momentum'] * buf
            out.append((p - lr * d).detach())
            lrs.append(lr)
    return out, lrs
