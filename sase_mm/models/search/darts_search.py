"""The DARTS search model: a supernet classifier and its one alpha tensor.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333), searched with DARTS (Liu et al., Differentiable
Architecture Search, ICLR 2019). docs/spec.md section 3 states the algorithm;
this module is its mmengine form. The model owns what is optimised: the
supernet's weights, the alpha (``alphas``, the only alpha key of the
state_dict), the mixing weights ``mix() = softmax(alpha)`` and the loss
``batch_loss``. The loop (``DARTSLoop``) hands ``train_step`` one batch of
each half of the training set, and ``train_step`` does one search
iteration, in this order:

1. alpha step on the search batch, with the gradient the architect computes
   (``architect.alpha_gradient``: first or second order, the virtual SGD
   step and the finite-difference Hessian-vector product; it leaves the
   weights, the BN statistics and every ``.grad`` untouched);
2. weight step on the train batch with the new alpha, mixed by
   ``softmax(alpha).detach()``, so its backward never reaches alpha and its
   weight gradient is that of the train loss alone; its forward is the only
   one of the iteration that updates the BN running statistics.

The optimizers are checked against the model on every step
(``contract.check_search_optimizers``, the loop's check too). Several
processes: the weight gradient is averaged across ranks here, the alpha
step's gradients in the architect (``grad_sync``), so every rank holds the
same alpha and weights.
"""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.optim import AmpOptimWrapper, OptimWrapper, OptimWrapperDict
from torch.func import functional_call

from ...registry import MODELS
from ..layers.builder import is_searchable
from ..sase import Genotype
from ..sase.supernet import ALPHA_INIT_STD, claim_alphas
from . import architect
from .contract import check_search_optimizers
from .grad_sync import all_reduce_grads_
from .guard import DivergenceGuard, guarded_alpha_step
from .sync_bn import convert_sync_bn

Batch = Dict[str, torch.Tensor]


@MODELS.register_module()
class DARTSSearch(BaseModel):
    """A DARTS supernet classifier with one shared (6, 7) alpha.

    Args:
        supernet (dict): config of the classifier with searchable attention,
            e.g. ``dict(type='sase_mm.CifarResNet', depth=20,
            num_classes=10, attn_cfg=dict(type='sase_mm.SASESearch'))``. It
            is built with ``alphas=<this model's alpha>``, must contain a
            searchable module (``is_searchable``) reading that alpha, and
            must accept ``forward(x, mix)`` (mix: the (6, 7) mixing weights)
            returning logits (B, num_classes).
        order (int): 2 (the paper's second-order approximation) or 1.
        alpha_init_std (float): alpha starts as ``std * N(0, 1)`` (1e-3).
        fd_radius (float): the finite difference's ``eps * ||u||`` (0.01).
        nan_policy (str): what a NaN / inf loss, alpha gradient or alpha
            does (``guard.py``): ``'stop'`` (default) raises
            :class:`~.guard.SearchDiverged`; ``'skip_step'`` skips that step,
            as AMP's loss scaler does, and stops after ``max_nan_skips``
            consecutive skipped iterations.
        max_nan_skips (int): see ``nan_policy`` (3).
        sync_bn (bool): normalise with the statistics of the global batch
            across processes (``sync_bn.py``, CPU and GPU), so that N
            processes with batch B search as one process with batch N * B;
            default False (each process's own batch, as the paper's
            single-GPU search).
        data_preprocessor (dict, optional): mmengine data preprocessor
            (default: moves the batch to the model's device).
        init_cfg (dict, optional): mmengine initialisation config.

    Batches (from ``default_collate``): ``dict(inputs=(B, C, H, W) float,
    data_samples=(B,) int64 labels)``; ``train_step`` takes
    ``dict(train=batch, search=batch)``.
    """
    # is_searchable: reads the network's shared alpha and exposes
    # arch_alphas, mix() and genotype() (what GenotypeHook and the tools read).
    searchable = True

    def __init__(self, supernet: dict, order: int = 2,
                 alpha_init_std: float = ALPHA_INIT_STD,
                 fd_radius: float = 0.01, nan_policy: str = 'stop',
                 max_nan_skips: int = 3, sync_bn: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        if order not in (1, 2):
            raise ValueError(f'DARTS order must be 1 (first order) or 2 '
                             f'(second order, the paper\'s), got {order!r}')
        self.order = order
        self.fd_radius = fd_radius
        self.guard = DivergenceGuard(nan_policy, max_nan_skips)
        # Claimed before the supernet is built: the single owner of alpha in
        # the state_dict, drawn before any weight.
        self.alphas = claim_alphas(self, alpha_init_std)
        self.supernet = MODELS.build(supernet,
                                     default_args=dict(alphas=self.alphas))
        if sync_bn:
            convert_sync_bn(self.supernet)
        if not any(is_searchable(m) and m.arch_alphas is self.alphas
                   for m in self.supernet.modules()):
            raise ValueError(
                'the supernet does not read the search model\'s alpha: its '
                'attention must be searchable (e.g. attn_cfg=dict(type='
                '\'sase_mm.SASESearch\')) and it must pass `alphas` on')

    # ------------------------------------------------------------ parameters
    @property
    def arch_alphas(self) -> nn.Parameter:
        """The (6, 7) alpha (``alphas``), as every searchable module names
        it."""
        return self.alphas

    def arch_parameters(self) -> List[nn.Parameter]:
        """What the alpha optimizer updates: ``[alphas]``."""
        return [self.alphas]

    def weight_parameters(self) -> List[nn.Parameter]:
        """What the weight optimizer updates: every supernet parameter."""
        return list(self.supernet.parameters())

    def mix(self) -> torch.Tensor:
        """The mixing weights softmax(alpha) over each edge's operations,
        (6, 7), differentiable in alpha."""
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
        logits = self.supernet(inputs, self.mix())
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

    def batch_loss(self, batch: Batch, mix: torch.Tensor,
                   params: Optional[Dict[str, torch.Tensor]] = None,
                   buffers: Optional[Dict[str, torch.Tensor]] = None
                   ) -> torch.Tensor:
        """The cross-entropy of the supernet on ``batch``.

        Args:
            batch: ``dict(inputs=(B, C, H, W), data_samples=(B,))``.
            mix: (6, 7) mixing weights.
            params, buffers: supernet tensors by name to use instead of its
                own (``functional_call``: nothing is mutated; buffers that
                BN updates are updated in the given dict).

        Returns:
            The scalar loss.
        """
        if params is None and buffers is None:
            logits = self.supernet(batch['inputs'], mix)
        else:
            logits = functional_call(self.supernet, (params or {}, buffers
                                                     or {}),
                                     (batch['inputs'], ), dict(mix=mix))
        return F.cross_entropy(logits, batch['data_samples'])

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

        Raises:
            SearchDiverged: a loss, the alpha gradient or alpha is not finite
                (see ``nan_policy``).
        """
        if not isinstance(data, dict) or set(data) != {'train', 'search'}:
            raise TypeError(
                'DARTSSearch.train_step takes dict(train=batch, '
                'search=batch); train it with train_cfg=dict(type='
                '\'sase_mm.DARTSLoop\', search_dataloader=...), got '
                f'{type(data).__name__}'
                f'{" with keys " + str(sorted(data)) if isinstance(data, dict) else ""}')  # noqa: E501
        w_opt, a_opt = check_search_optimizers(self, optim_wrapper)
        train = self.data_preprocessor(data['train'], True)
        search = self.data_preprocessor(data['search'], True)
        guard = self.guard
        guard.start_step()
        with w_opt.optim_context(self):
            grad, loss_search = self.alpha_gradient(train, search,
                                                    w_opt.optimizer)
            if guard.check(loss_search, 'the search loss (alpha step)') and \
                    guard.check(grad, 'the alpha gradient'):
                guarded_alpha_step(guard, self.alphas,
                                   lambda: self._apply_alpha_gradient(
                                       grad, a_opt))
            loss = self.weight_step(train, w_opt)
        guard.end_step()
        return dict(loss=loss, loss_search=loss_search)

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
        saved = None
        if self.guard.policy == 'skip_step':  # BN buffers, to undo a skip
            saved = [b.clone() for b in self.supernet.buffers()]
        loss = self.batch_loss(train, self.alphas.detach().softmax(dim=-1))
        if not self.guard.check(loss.detach(), 'the train loss (weight step)'):
            with torch.no_grad():  # skipped: no step, statistics restored
                for b, s in zip(self.supernet.buffers(), saved):
                    b.copy_(s)
            return loss.detach()
        w_opt.backward(loss)
        all_reduce_grads_(self.weight_parameters())
        w_opt.step()  # clips (clip_grad) then steps
        w_opt.zero_grad()
        return loss.detach()

    def alpha_gradient(self, train: Batch, search: Batch,
                       weight_optimizer: torch.optim.Optimizer):
        """The architecture gradient of this iteration, (6, 7), and the
        search loss (detached); see :func:`architect.alpha_gradient`.

        Leaves the network's parameters, buffers and ``.grad`` untouched.
        """
        return architect.alpha_gradient(self, train, search,
                                        weight_optimizer)
