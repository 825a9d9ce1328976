"""The DARTS search model: a supernet classifier and its one alpha tensor.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333), searched with DARTS (Liu et al., Differentiable
Architecture Search, ICLR 2019). docs/spec.md section 3 states the algorithm;
this module is its mmengine form. The model owns what is optimised: the
supernet's weights, the alpha (``alphas``, the only alpha key of the
state_dict, bound to every searchable block of the supernet once it is
built: ``sase/alphas.py``), the mixing weights ``mix() = softmax(alpha)``
and the loss ``batch_loss``. The loop (``DARTSLoop``) hands ``train_step``
one batch of each half of the training set, and ``train_step`` does one
search iteration, in this order:

1. alpha step on the search batch, with the gradient the architect computes
   (``architect.alpha_gradient``: first or second order, the virtual SGD
   step and the finite-difference Hessian-vector product; it leaves the
   weights, the BN statistics and every ``.grad`` untouched);
2. weight step on the train batch with the new alpha, mixed by
   ``softmax(alpha).detach()``, so its backward never reaches alpha and its
   weight gradient is that of the train loss alone; its forward is the only
   one of the iteration that updates the BN running statistics.

The supernet is either a network of our own returning logits
(``CifarResNet``; the loss is the cross-entropy), or any OpenMMLab model
(an mmengine ``BaseModel``: an mmpretrain ``ImageClassifier``, an mmdet
``FasterRCNN`` / ``MaskRCNN``) whose backbone holds searchable blocks
(``SASEResNet`` with ``SASESearch``, or a ResNet with the ``SASESearch``
plug-in). An mm model's batches go through its own ``data_preprocessor``,
and its loss is its own ``loss(inputs, data_samples)`` summed as mmengine's
``parse_losses`` does (every key containing ``'loss'``: a detector's RPN and
ROI losses). Either way the mixing weights of a pass reach the blocks
through ``sase/mixing.py`` (bound to the alpha for the pass). An mm
model's stochastic losses (proposal sampling) draw the same random numbers in
every pass over one batch of an iteration, so that the unrolled step and
the finite difference compare like with like.

The optimizers are checked against the model on every step
(``contract.check_search_optimizers``, the loop's check too). Several
processes: the weight gradient is averaged across ranks here, the alpha
step's gradients in the architect (``grad_sync``), so every rank holds the
same alpha and weights.
"""
from typing import Dict, List, Optional

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.model import BaseModel
from mmengine.optim import AmpOptimWrapper, OptimWrapper, OptimWrapperDict
from torch.func import functional_call

from ...registry import MODELS
from ..classifiers import logits_outputs
from ..sase import Genotype
from ..sase.alphas import (ALPHA_INIT_STD, alpha_readers, bind_alphas,
                           init_alphas)
from ..sase.mixing import mixing, softmax_mix
from . import architect
from .beta_decay import BetaDecay  # beyond the paper (search_options.md)
from .contract import check_search_optimizers
from .cost import ArchCost  # beyond the paper (docs/search_options.md)
from .grad_sync import all_reduce_grads_
from .guard import DivergenceGuard, guarded_alpha_step
from .sync_bn import convert_sync_bn

Batch = Dict[str, torch.Tensor]
# Batch key of the seed an mm model's stochastic loss is evaluated under.
PASS_SEED = 'pass_seed'

HOW_TO_SEARCH = (
    "make the supernet's attention searchable: attn_cfg=dict(type="
    "'sase_mm.SASESearch') on a sase_mm.SASEResNet / sase_mm.CifarResNet "
    "backbone, or plugins=[dict(cfg=dict(type='sase_mm.SASESearch'), "
    "position='after_conv3')] on an mmdet ResNet (Bottleneck depths) "
    "(docs/search_your_model.md)")


@MODELS.register_module()
class DARTSSearch(BaseModel):
    """A DARTS supernet with one shared (6, 7) alpha.

    Args:
        supernet (dict): config of the network with searchable attention.
            Either a network of our own whose ``forward(x)`` returns logits
            (B, num_classes), e.g. ``dict(type='sase_mm.CifarResNet',
            depth=20, num_classes=10, attn_cfg=dict(
            type='sase_mm.SASESearch'))``; or any mm model (``BaseModel``
            with ``loss``/``predict``), e.g. an mmpretrain
            ``ImageClassifier`` or an mmdet ``FasterRCNN`` whose backbone
            has ``SASESearch`` blocks. Either must contain a searchable
            block (an ``AlphaHolder`` with ``reads_alphas``); this model
            binds its alpha to all of them once the supernet is built.
            Every weight must be trainable (no frozen stages) and no
            activation checkpointing (``with_cp``).
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
        arch_cost (dict, optional): beyond the paper, off by default:
            ``dict(file=COSTS_JSON, weight=lambda[, normalize=True])`` adds
            ``lambda * sum_e softmax(alpha_e) . cost_e`` to the alpha
            objective (``cost.py``; the costs from
            ``tools/analysis/op_costs.py``; docs/search_options.md).
        beta_decay (dict, optional): beyond the paper, off by default:
            ``dict(weight=lambda)`` adds beta-DARTS's Beta-Decay term
            ``lambda_t * mean_e logsumexp(alpha_e)`` to the alpha objective,
            ``lambda_t`` growing linearly to ``lambda`` at the last epoch
            (``beta_decay.py``; docs/search_options.md).
        data_preprocessor (dict, optional): mmengine data preprocessor
            (default: an mm supernet's own; else one that moves the batch
            to the model's device).
        init_cfg (dict, optional): mmengine initialisation config.

    Batches: for a network of our own (from ``default_collate``)
    ``dict(inputs=(B, C, H, W) float, data_samples=(B,) int64 labels)``;
    for an mm model what its dataset pipeline packs (``pseudo_collate``).
    ``train_step`` takes ``dict(train=batch, search=batch)``.
    """
    # is_search_model: exposes arch_alphas, arch_parameters(), mix() and
    # genotype() (what the optimizer constructor, GenotypeHook and the tools
    # read).
    search_model = True
    # Set by DARTSLoop(warmup_epochs=k) during the first k epochs: weight
    # steps only, alpha untouched (docs/search_options.md).
    freeze_alphas = False
    # epoch / max_epochs, set by DARTSLoop every epoch (the Beta-Decay
    # schedule reads it).
    search_progress = 0.0

    def __init__(self, supernet: dict, order: int = 2,
                 alpha_init_std: float = ALPHA_INIT_STD,
                 fd_radius: float = 0.01, nan_policy: str = 'stop',
                 max_nan_skips: int = 3, sync_bn: bool = False,
                 arch_cost: Optional[dict] = None,
                 beta_decay: Optional[dict] = None,
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
        self.arch_cost = ArchCost.build(arch_cost)  # None: the paper's
        self.beta_decay = BetaDecay.build(beta_decay)  # None: the paper's
        # Drawn before any weight; the single alpha key of the state_dict,
        # bound to every holder of the supernet once it is built.
        self.alphas = init_alphas(alpha_init_std)
        # (ConfigDict: mm models read their train_cfg / test_cfg by
        # attribute.)
        self.supernet = MODELS.build(ConfigDict(supernet))
        bind_alphas(self.supernet, self.alphas)
        self.is_mm_model = isinstance(self.supernet, BaseModel)
        if self.is_mm_model and data_preprocessor is None:
            # The model's own normalisation, padding and batch transforms.
            self.data_preprocessor = self.supernet.data_preprocessor
        if sync_bn:
            convert_sync_bn(self.supernet)
        self._check_supernet()

    def _check_supernet(self) -> None:
        """At least one searchable block (now reading this model's alpha);
        every weight trainable; no recomputation outside the mix binding."""
        if next(alpha_readers(self.supernet), None) is None:
            raise ValueError(
                f'the supernet ({type(self.supernet).__name__}) has no '
                f'searchable attention, so it does not read the search '
                f'model\'s alpha and there is nothing to search: '
                f'{HOW_TO_SEARCH}')
        frozen = [n for n, p in self.supernet.named_parameters()
                  if not p.requires_grad]
        if frozen:
            raise ValueError(
                f'the search trains every supernet weight, but '
                f'{len(frozen)} are frozen (requires_grad=False), e.g. '
                f'{frozen[:3]}: set the backbone\'s frozen_stages=-1 and '
                f'norm_cfg=dict(type=\'BN\', requires_grad=True)')
        cp = [n for n, m in self.supernet.named_modules()
              if getattr(m, 'with_cp', False)]
        if cp:
            raise ValueError(
                f'activation checkpointing (with_cp=True, e.g. {cp[:3]}) '
                f'recomputes blocks outside the pass that binds the mixing '
                f'weights; set with_cp=False for the search')

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
        return softmax_mix(self.alphas)

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
        An mm supernet answers every mode itself. The mixing weights
        ``mix()`` are bound to the blocks for the pass.
        """
        with mixing(self.alphas, self.mix()):
            if self.is_mm_model:
                return self.supernet(inputs, data_samples, mode=mode)
            logits = self.supernet(inputs)
        return logits_outputs(logits, data_samples, mode)

    def batch_loss(self, batch: Batch, mix: torch.Tensor,
                   params: Optional[Dict[str, torch.Tensor]] = None,
                   buffers: Optional[Dict[str, torch.Tensor]] = None
                   ) -> torch.Tensor:
        """The loss of the supernet on ``batch``: the cross-entropy of a
        network of our own; an mm model's ``loss`` summed as
        ``parse_losses`` does.

        Args:
            batch: ``dict(inputs=(B, C, H, W), data_samples=(B,))``, or an
                mm model's preprocessed batch (with ``pass_seed``: its
                stochastic parts draw from that seed).
            mix: (6, 7) mixing weights.
            params, buffers: supernet tensors by name to use instead of its
                own (``functional_call``: nothing is mutated; buffers that
                BN updates are updated in the given dict).

        Returns:
            The scalar loss.
        """
        if self.is_mm_model:
            return self._mm_loss(batch, mix, params, buffers)
        with mixing(self.alphas, mix):
            if params is None and buffers is None:
                logits = self.supernet(batch['inputs'])
            else:
                logits = functional_call(
                    self.supernet, (params or {}, buffers or {}),
                    (batch['inputs'], ))
        return F.cross_entropy(logits, batch['data_samples'])

    def _mm_loss(self, batch: dict, mix: torch.Tensor,
                 params: Optional[Dict[str, torch.Tensor]],
                 buffers: Optional[Dict[str, torch.Tensor]]) -> torch.Tensor:
        args = (batch['inputs'], batch['data_samples'])
        with mixing(self.alphas, mix), _seeded(batch.get(PASS_SEED),
                                               batch['inputs']):
            if params is None and buffers is None:
                losses = self.supernet(*args, mode='loss')
            else:
                losses = functional_call(self.supernet, (params or {},
                                                         buffers or {}),
                                         args, dict(mode='loss'))
        return self.supernet.parse_losses(losses)[0]

    def _prepare(self, data: Dict[str, Batch]):
        """The two halves through the data preprocessor; an mm model's
        batches get one seed each (``PASS_SEED``)."""
        train = self.data_preprocessor(data['train'], True)
        search = self.data_preprocessor(data['search'], True)
        if self.is_mm_model:
            seed = int(torch.randint(2**31 - 1, ()))  # the global stream
            train, search = dict(train), dict(search)
            train[PASS_SEED], search[PASS_SEED] = seed, seed + 1
        return train, search

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
            (CE on the search batch at w' for order 2, at w for order 1;
            absent while ``freeze_alphas``), ``arch_cost`` (the penalty,
            with ``arch_cost`` set) and ``beta_decay`` (the Beta-Decay term,
            with ``beta_decay`` set).

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
        train, search = self._prepare(data)
        guard = self.guard
        guard.start_step()
        out = {}
        # Beyond the paper (docs/search_options.md): no alpha step while
        # freeze_alphas (warm-up); the cost and Beta-Decay terms' gradients.
        if not self.freeze_alphas:
            grad, loss_search = self.alpha_gradient(
                train, search, w_opt.optimizer,
                lambda: w_opt.optim_context(self))
            out['loss_search'] = loss_search
            if self.arch_cost is not None:
                out['arch_cost'], cost_grad = self.arch_cost.penalty(
                    self.alphas)
                grad = grad + cost_grad
            if self.beta_decay is not None:
                out['beta_decay'], decay_grad = self.beta_decay.penalty(
                    self.alphas, self.search_progress)
                grad = grad + decay_grad
            if guard.check(loss_search, 'the search loss (alpha step)') and \
                    guard.check(grad, 'the alpha gradient'):
                guarded_alpha_step(guard, self.alphas,
                                   lambda: self._apply_alpha_gradient(
                                       grad, a_opt))
        loss = self.weight_step(train, w_opt)
        guard.end_step()
        return dict(loss=loss, **out)

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
        current (detached) alpha; returns the loss (detached). The forward
        runs in ``w_opt.optim_context`` (autocast under AMP), the backward
        outside it, as mmengine's ``BaseModel.train_step``."""
        saved = None
        if self.guard.policy == 'skip_step':  # BN buffers, to undo a skip
            saved = [b.clone() for b in self.supernet.buffers()]
        with w_opt.optim_context(self):
            loss = self.batch_loss(train, softmax_mix(self.alphas.detach()))
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
                       weight_optimizer: torch.optim.Optimizer,
                       context: architect.Context = contextlib.nullcontext):
        """The architecture gradient of this iteration, (6, 7), and the
        search loss (detached); see :func:`architect.alpha_gradient`
        (``context``: that of the forward passes).

        Leaves the network's parameters, buffers and ``.grad`` untouched.
        """
        return architect.alpha_gradient(self, train, search,
                                        weight_optimizer, context)


def _seeded(seed: Optional[int], like):
    """A scope whose random draws (CPU and the inputs' CUDA device) come
    from ``seed`` and leave the global stream as it was; none if None."""
    if seed is None:
        return contextlib.nullcontext()
    tensor = like[0] if isinstance(like, (list, tuple)) else like
    devices = [tensor.device] if tensor.is_cuda else []
    rng = torch.random.fork_rng(devices=devices)

    @contextlib.contextmanager
    def scope():
        with rng:
            torch.random.default_generator.manual_seed(seed)
            for device in devices:
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(seed)
            yield
    return scope()
