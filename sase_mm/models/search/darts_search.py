"""The DARTS search model: a supernet classifier and its one alpha tensor.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333), searched with DARTS (Liu et al., Differentiable
Architecture Search, ICLR 2019). docs/spec.md section 3 states the algorithm;
this module is its mmengine form: the loop (``DARTSLoop``) hands
``train_step`` one batch of each half of the training set, and
``train_step`` does one search iteration:

1. alpha step on the search batch. First order:
   ``grad_alpha L_val(w, alpha)``. Second order: a virtual SGD step
   ``w' = w - xi * (mu * buf + grad_w L_train(w, alpha) + wd * w)`` with the
   weight optimizer's real lr, momentum, momentum buffer and weight decay;
   ``grad_alpha L_val(w', alpha) - xi * H v`` where ``v = grad_w' L_val`` and
   the mixed Hessian-vector product ``H v`` is a central difference of
   ``grad_alpha L_train`` at ``w +- eps * v``, ``eps = 0.01 / ||v||``. All
   of these passes evaluate the supernet with ``torch.func.functional_call``:
   the real weights are never modified, and no copy of the model is made.
2. weight step on the train batch with the new (detached) alpha.

Gradient hygiene: the alpha step takes its gradients with
``torch.autograd.grad`` restricted to what it needs, so it leaves nothing in
any ``.grad``; the weight step runs on ``softmax(alpha).detach()``, so its
backward never reaches alpha, and its weight gradient is that of the train
loss alone.

BatchNorm running statistics: the alpha-step passes (the virtual step's
train forward, the validation forward at w', the two finite-difference
forwards) run on scratch copies of the network's buffers, discarded at the
end of the step. They normalise with batch statistics as usual in training
mode, but only the weight step's forward updates the real running
statistics: once per iteration, from the train batch, as in plain training.

Several processes: the gradients the step needs (the virtual step's weight
gradient, ``grad_alpha`` and ``v``, the Hessian term, the weight gradient)
are averaged across ranks explicitly, so every rank holds the same alpha and
weights (see ``grad_sync``).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.optim import AmpOptimWrapper, OptimWrapper, OptimWrapperDict
from torch.func import functional_call

from ...registry import MODELS
from ..sase import Genotype
from ..sase.supernet import ALPHA_INIT_STD, init_alphas
from .grad_sync import all_reduce_grads_, all_reduce_mean

Batch = Dict[str, torch.Tensor]
OPTIMIZER_KEYS = ('weights', 'alphas')


@MODELS.register_module()
class DARTSSearch(BaseModel):
    """A DARTS supernet classifier with one shared (6, 7) alpha.

    Args:
        supernet (dict): config of the classifier with searchable attention,
            e.g. ``dict(type='sase_mm.CifarResNet', depth=20,
            num_classes=10, attn_cfg=dict(type='sase_mm.SASESearch'))``. It
            is built with ``alphas=<this model's alpha>`` and must accept
            ``forward(x, weights)`` returning logits (B, num_classes).
        order (int): 2 (the paper's second-order approximation) or 1.
        alpha_init_std (float): alpha starts as ``std * N(0, 1)`` (1e-3).
        fd_radius (float): the finite difference's ``eps * ||v||`` (0.01).
        data_preprocessor (dict, optional): mmengine data preprocessor
            (default: moves the batch to the model's device).
        init_cfg (dict, optional): mmengine initialisation config.

    Batches (from ``default_collate``): ``dict(inputs=(B, C, H, W) float,
    data_samples=(B,) int64 labels)``; ``train_step`` takes
    ``dict(train=batch, search=batch)``.
    """

    def __init__(self, supernet: dict, order: int = 2,
                 alpha_init_std: float = ALPHA_INIT_STD,
                 fd_radius: float = 0.01,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        if order not in (1, 2):
            raise ValueError(f'DARTS order must be 1 (first order) or 2 '
                             f'(second order, the paper\'s), got {order!r}')
        self.order = order
        self.fd_radius = fd_radius
        # Registered here first: the single owner of alpha in the state_dict.
        self.alphas = init_alphas(alpha_init_std)
        self.supernet = MODELS.build(supernet,
                                     default_args=dict(alphas=self.alphas))
        if getattr(self.supernet, 'arch_alphas', None) is not self.alphas:
            raise ValueError(
                'the supernet does not read the search model\'s alpha: its '
                'attention must be searchable (e.g. attn_cfg=dict(type='
                '\'sase_mm.SASESearch\')) and it must pass `alphas` on')
        self._checked_optimizers = False

    # ------------------------------------------------------------ parameters
    def arch_parameters(self) -> List[nn.Parameter]:
        """What the alpha optimizer updates: ``[alphas]``."""
        return [self.alphas]

    def weight_parameters(self) -> List[nn.Parameter]:
        """What the weight optimizer updates: every supernet parameter."""
        return list(self.supernet.parameters())

    def mixing_weights(self) -> torch.Tensor:
        """softmax(alpha) over each edge's operations, (6, 7)."""
        return self.alphas.softmax(dim=-1)

    def genotype(self) -> Genotype:
        """The searched block: argmax of each alpha row."""
        return Genotype.from_alphas(self.alphas)

    # --------------------------------------------------------------- forward
    def forward(self, inputs: torch.Tensor,
                data_samples: Optional[torch.Tensor] = None,
                mode: str = 'tensor'):
        """inputs (B, C, H, W); data_samples (B,) labels.

        Modes: ``'tensor'`` logits (B, K); ``'loss'`` ``dict(loss=CE)``;
        ``'predict'`` a list of ``dict(pred_label, pred_score, gt_label)``.
        """
        logits = self.supernet(inputs, self.mixing_weights())
        if mode == 'tensor':
            return logits
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, data_samples))
        if mode == 'predict':
            scores = logits.softmax(dim=-1)
            preds = scores.argmax(dim=-1)
            gts = [None] * len(preds) if data_samples is None else \
                data_samples
            return [dict(pred_label=p, pred_score=s, gt_label=g)
                    for p, s, g in zip(preds, scores, gts)]
        raise ValueError(f'invalid mode {mode!r}; valid: \'tensor\', '
                         f'\'loss\', \'predict\'')

    def _loss(self, batch: Batch, weights: torch.Tensor,
              params: Optional[Dict[str, torch.Tensor]] = None,
              buffers: Optional[Dict[str, torch.Tensor]] = None
              ) -> torch.Tensor:
        """CE of the supernet on ``batch``, optionally with substituted
        parameters and buffers (``functional_call``: nothing is mutated)."""
        if params is None and buffers is None:
            logits = self.supernet(batch['inputs'], weights)
        else:
            logits = functional_call(self.supernet, (params or {}, buffers
                                                     or {}),
                                     (batch['inputs'], ),
                                     dict(weights=weights))
        return F.cross_entropy(logits, batch['data_samples'])

    def _scratch_buffers(self) -> Dict[str, torch.Tensor]:
        # The alpha step's passes update copies of the BN statistics, so the
        # real ones see exactly one update per iteration (the weight step).
        return {n: b.clone() for n, b in self.supernet.named_buffers()}

    # ------------------------------------------------------------- the step
    def train_step(self, data: Dict[str, Batch],
                   optim_wrapper: OptimWrapperDict) -> Dict[str, torch.Tensor]:
        """One search iteration: alpha step on ``data['search']``, then a
        weight step on ``data['train']`` (docs/spec.md section 3).

        Args:
            data: ``dict(train=batch, search=batch)``, as ``DARTSLoop``
                yields.
            optim_wrapper: ``OptimWrapperDict(weights=..., alphas=...)``, as
                ``DARTSOptimWrapperConstructor`` builds.

        Returns:
            dict: ``loss`` (train CE of the weight step) and ``loss_search``
            (CE on the search batch at w' for order 2, at w for order 1).
        """
        if not isinstance(data, dict) or set(data) != {'train', 'search'}:
            raise TypeError(
                'DARTSSearch.train_step takes dict(train=batch, '
                'search=batch); train it with train_cfg=dict(type='
                '\'sase_mm.DARTSLoop\', search_dataloader=...), got '
                f'{type(data).__name__}'
                f'{" with keys " + str(sorted(data)) if isinstance(data, dict) else ""}')  # noqa: E501
        w_opt, a_opt = self._optimizers(optim_wrapper)
        train = self.data_preprocessor(data['train'], True)
        search = self.data_preprocessor(data['search'], True)
        with w_opt.optim_context(self):
            grad, loss_search = self.alpha_gradient(train, search,
                                                    w_opt.optimizer)
            self._apply_alpha_gradient(grad, a_opt)
            loss = self.weight_step(train, w_opt)
        return dict(loss=loss, loss_search=loss_search)

    def _optimizers(self, optim_wrapper) -> Tuple[OptimWrapper, OptimWrapper]:
        if not isinstance(optim_wrapper, OptimWrapperDict) or any(
                k not in optim_wrapper for k in OPTIMIZER_KEYS):
            keys = list(optim_wrapper.keys()) if isinstance(
                optim_wrapper, OptimWrapperDict) else type(
                    optim_wrapper).__name__
            raise TypeError(
                'DARTSSearch needs OptimWrapperDict(weights=..., alphas=...)'
                ': set optim_wrapper=dict(constructor=\'sase_mm.'
                f'DARTSOptimWrapperConstructor\', weights=..., alphas=...); '
                f'got {keys}')
        w_opt, a_opt = optim_wrapper['weights'], optim_wrapper['alphas']
        if not self._checked_optimizers:
            in_w = {id(p) for g in w_opt.optimizer.param_groups
                    for p in g['params']}
            in_a = {id(p) for g in a_opt.optimizer.param_groups
                    for p in g['params']}
            if id(self.alphas) in in_w or in_a != {id(self.alphas)}:
                raise ValueError(
                    'the `alphas` optimizer must hold exactly the alpha '
                    'tensor and the `weights` optimizer must not hold it')
            self._checked_optimizers = True
        return w_opt, a_opt

    def _apply_alpha_gradient(self, grad: torch.Tensor,
                              a_opt: OptimWrapper) -> None:
        self.alphas.grad = grad.detach().to(self.alphas.dtype)
        if isinstance(a_opt, AmpOptimWrapper):
            # The gradient was not loss-scaled: step the optimizer directly.
            a_opt.optimizer.step()
        else:
            a_opt.step()
        a_opt.zero_grad()

    def weight_step(self, train: Batch, w_opt: OptimWrapper) -> torch.Tensor:
        """One optimizer step of the weights on the train batch with the
        current (detached) alpha; returns the loss (detached)."""
        weights = self.alphas.detach().softmax(dim=-1)
        loss = self._loss(train, weights)
        w_opt.backward(loss)
        all_reduce_grads_(self.weight_parameters())
        w_opt.step()  # clips (clip_grad) then steps
        w_opt.zero_grad()
        return loss.detach()

    # ------------------------------------------------------- alpha gradient
    def alpha_gradient(self, train: Batch, search: Batch,
                       weight_optimizer: torch.optim.Optimizer
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The architecture gradient of this iteration, (6, 7).

        Leaves the network's parameters, buffers and ``.grad`` untouched.

        Returns:
            (grad_alpha, loss on the search batch (detached)).
        """
        buffers = self._scratch_buffers()
        if self.order == 1:
            loss_s = self._loss(search, self.mixing_weights(), None, buffers)
            (grad, ) = torch.autograd.grad(loss_s, [self.alphas])
            return all_reduce_mean([grad])[0], loss_s.detach()
        return self._second_order_gradient(train, search, weight_optimizer,
                                           buffers)

    def _second_order_gradient(self, train, search, optimizer, buffers):
        names, params = zip(*self.supernet.named_parameters())
        # Virtual step w' = w - xi * (mu * buf + g + wd * w), g from the
        # train batch at the current alpha.
        with torch.no_grad():
            weights = self.mixing_weights()
        loss_t = self._loss(train, weights, None, buffers)
        grads = _zeros_for_unused(
            torch.autograd.grad(loss_t, params, allow_unused=True), params)
        grads = all_reduce_mean(grads)
        virtual, lrs = virtual_sgd_step(params, grads, optimizer)
        virtual = [t.requires_grad_() for t in virtual]

        weights = self.mixing_weights()
        loss_s = self._loss(search, weights, dict(zip(names, virtual)),
                            buffers)
        grad_alpha, *v = _zeros_for_unused(
            torch.autograd.grad(loss_s, [self.alphas] + virtual,
                                allow_unused=True), [self.alphas] + virtual)
        grad_alpha, *v = all_reduce_mean([grad_alpha] + v)

        # d w'/d alpha = -xi * d^2 L_train / (d w d alpha): the product with
        # v by a central difference of grad_alpha L_train at w +- eps * u,
        # u = xi * v (xi per parameter group; for one lr this is exactly
        # docs/spec.md's eps = 0.01 / ||v|| with the factor xi outside).
        with torch.no_grad():
            u = [lr * t for lr, t in zip(lrs, v)]
            norm = torch.sqrt(sum((t * t).sum() for t in u))
        if norm.item() == 0:
            return grad_alpha, loss_s.detach()
        eps = self.fd_radius / norm
        hess = []
        for sign in (1., -1.):
            with torch.no_grad():
                moved = {n: p + (sign * eps) * t
                         for n, p, t in zip(names, params, u)}
            loss = self._loss(train, self.mixing_weights(), moved, buffers)
            hess.append(torch.autograd.grad(loss, [self.alphas])[0])
        hvp = (hess[0] - hess[1]) / (2 * eps)
        hvp = all_reduce_mean([hvp])[0]
        return grad_alpha - hvp, loss_s.detach()


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

    Returns:
        (new detached tensors, the lr of each parameter).
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
