"""Two optimizers for a DARTS search: SGD on the weights, Adam on alpha.

SASE (arXiv 2411.08333), DARTS (Liu et al., ICLR 2019): the network weights
and the architecture weights alpha are optimised by different optimizers on
different halves of the data (docs/spec.md section 3: SGD 0.025 / 0.9 / 5e-4
with gradient clipping 5 on the weights; Adam 3e-4, betas (0.5, 0.999),
weight decay 1e-3 on alpha). This constructor builds
``OptimWrapperDict(weights=..., alphas=...)`` from one config each; the keys
are the search contract's (``sase_mm.models.search.contract``), which also
checks the built optimizers against the model.
"""
import copy

from mmengine.optim import (DefaultOptimWrapperConstructor,
                            OptimWrapperDict)
from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS, DefaultScope

from ..models.search.contract import (ALPHA_OPTIMIZER, OPTIMIZER_KEYS,
                                      WEIGHT_OPTIMIZER)
from ..registry import OPTIM_WRAPPER_CONSTRUCTORS
from ..utils.unwrap import unwrap_model


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DARTSOptimWrapperConstructor:
    """Builds ``OptimWrapperDict(weights=..., alphas=...)``.

    Args:
        optim_wrapper_cfg (dict): ``dict(weights=<optim wrapper cfg>,
            alphas=<optim wrapper cfg>)``, each like mmengine's
            ``dict(type='OptimWrapper', optimizer=dict(type='SGD', ...),
            clip_grad=dict(max_norm=5))``.
        paramwise_cfg (dict, optional): mmengine's paramwise options, applied
            to the weights (names relative to the supernet).

    The model must provide ``supernet`` (the weights' module) and
    ``arch_parameters()`` (``[alpha]``), as ``DARTSSearch`` does.

    Example::

        optim_wrapper = dict(
            constructor='sase_mm.DARTSOptimWrapperConstructor',
            weights=dict(optimizer=dict(type='SGD', lr=0.025, momentum=0.9,
                                        weight_decay=5e-4),
                         clip_grad=dict(max_norm=5)),
            alphas=dict(optimizer=dict(type='Adam', lr=3e-4,
                                       betas=(0.5, 0.999),
                                       weight_decay=1e-3)))
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg=None):
        unknown = set(optim_wrapper_cfg) - set(OPTIMIZER_KEYS)
        missing = [k for k in OPTIMIZER_KEYS if k not in optim_wrapper_cfg]
        if unknown or missing:
            raise ValueError(
                f'DARTSOptimWrapperConstructor takes optim_wrapper=dict('
                f'weights=dict(optimizer=...), alphas=dict(optimizer=...)); '
                f'missing {missing}, unknown {sorted(unknown)}')
        for key in OPTIMIZER_KEYS:
            if 'optimizer' not in optim_wrapper_cfg[key]:
                raise ValueError(f'optim_wrapper.{key} needs an `optimizer` '
                                 f'config, got {optim_wrapper_cfg[key]}')
        self.cfg = copy.deepcopy(optim_wrapper_cfg)
        self.paramwise_cfg = paramwise_cfg

    def __call__(self, model) -> OptimWrapperDict:
        # Optimizers and wrappers live in mmengine's registries (sase_mm
        # adds none): build them in mmengine's scope.
        with DefaultScope.overwrite_default_scope('mmengine'):
            return self._build(model)

    def _build(self, model) -> OptimWrapperDict:
        model = unwrap_model(model)
        if not hasattr(model, 'arch_parameters') or not hasattr(
                model, 'supernet'):
            raise TypeError(
                f'{type(model).__name__} is not a search model: '
                'DARTSOptimWrapperConstructor needs `supernet` and '
                '`arch_parameters()` (use type=\'sase_mm.DARTSSearch\')')
        weights = DefaultOptimWrapperConstructor(
            copy.deepcopy(self.cfg[WEIGHT_OPTIMIZER]),
            self.paramwise_cfg)(model.supernet)
        alpha_cfg = copy.deepcopy(self.cfg[ALPHA_OPTIMIZER])
        wrapper_type = alpha_cfg.pop('type', 'OptimWrapper')
        optimizer_cfg = alpha_cfg.pop('optimizer')
        optimizer_cfg['params'] = list(model.arch_parameters())
        alphas = OPTIM_WRAPPERS.build(
            dict(type=wrapper_type, optimizer=OPTIMIZERS.build(optimizer_cfg),
                 **alpha_cfg))
        return OptimWrapperDict(**{WEIGHT_OPTIMIZER: weights,
                                   ALPHA_OPTIMIZER: alphas})
