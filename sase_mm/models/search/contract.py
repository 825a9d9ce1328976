"""What a search model is, and its two-optimizer contract, checked in one
place.

SASE (arXiv 2411.08333) searches with DARTS (Liu et al., ICLR 2019): the
network weights and the architecture weights alpha are optimised by two
optimizers, on two halves of the data (docs/spec.md section 3). A search
model (:func:`is_search_model`: its class sets ``search_model = True``, as
``DARTSSearch`` does) exposes the alpha it optimises (``arch_alphas``,
``arch_parameters()``), its mixing weights (``mix()``) and the block it has
found (``genotype()``); the loop, the optimizer constructor, the genotype
hook and the tools read those. This module owns that predicate, the
optimizer keys and the one check of the set-up, which both the loop
(``DARTSLoop``, before the first epoch) and the search model
(``DARTSSearch.train_step``, on every step, for use without the loop) run:

* the optimizer is an ``OptimWrapperDict`` with exactly the keys
  ``weights`` and ``alphas``;
* the ``alphas`` optimizer holds exactly the model's alpha and the
  ``weights`` optimizer does not hold it;
* no lr scheduler anneals the alpha lr, unless explicitly allowed.
"""
from typing import Any, Optional, Tuple

from mmengine.optim import OptimWrapper, OptimWrapperDict

WEIGHT_OPTIMIZER = 'weights'  # SGD on the network weights
ALPHA_OPTIMIZER = 'alphas'  # Adam on alpha
OPTIMIZER_KEYS = (WEIGHT_OPTIMIZER, ALPHA_OPTIMIZER)


def is_search_model(model: Any) -> bool:
    """Whether ``model`` (unwrapped) is a search model that reports its
    alpha, mixing weights and genotype (its class sets
    ``search_model = True``, e.g. ``DARTSSearch``)."""
    return getattr(type(model), 'search_model', False) is True


def _held(optim_wrapper: OptimWrapper) -> set:
    return {id(p) for g in optim_wrapper.optimizer.param_groups
            for p in g['params']}


def check_search_optimizers(model, optim_wrapper,
                            param_schedulers: Optional[dict] = None,
                            allow_alpha_lr_schedule: bool = False
                            ) -> Tuple[OptimWrapper, OptimWrapper]:
    """Checks a search's optimizers (and schedulers) against its model.

    Args:
        model: the search model, unwrapped (``is_search_model``, with the
            ``arch_alphas`` it optimises), e.g. ``DARTSSearch``.
        optim_wrapper: what the runner built (``DARTSOptimWrapperConstructor``
            builds the right thing).
        param_schedulers (dict | list, optional): the runner's schedulers;
            None skips the scheduler check (a model has none).
        allow_alpha_lr_schedule (bool): accept an lr scheduler on alpha.

    Returns:
        (weight optimizer wrapper, alpha optimizer wrapper).

    Raises:
        TypeError: not a search model, or not an ``OptimWrapperDict`` with
            exactly the keys ``weights`` and ``alphas``.
        ValueError: the optimizers hold the wrong parameters, or the alpha
            lr is scheduled.
    """
    if not is_search_model(model):
        raise TypeError(f'{type(model).__name__} is not a search model: a '
                        f'DARTS search trains e.g. sase_mm.DARTSSearch')
    if not isinstance(optim_wrapper, OptimWrapperDict) or set(
            optim_wrapper.keys()) != set(OPTIMIZER_KEYS):
        got = sorted(optim_wrapper.keys()) if isinstance(
            optim_wrapper, OptimWrapperDict) else type(optim_wrapper).__name__
        raise TypeError(
            'a DARTS search needs two optimizers, OptimWrapperDict('
            'weights=..., alphas=...): set optim_wrapper=dict(constructor='
            '\'sase_mm.DARTSOptimWrapperConstructor\', weights=dict('
            f'optimizer=...), alphas=dict(optimizer=...)); got {got}')
    w_opt = optim_wrapper[WEIGHT_OPTIMIZER]
    a_opt = optim_wrapper[ALPHA_OPTIMIZER]
    alpha = id(model.arch_alphas)
    if alpha in _held(w_opt) or _held(a_opt) != {alpha}:
        raise ValueError(
            'the `alphas` optimizer must hold exactly the alpha tensor and '
            'the `weights` optimizer must not hold it')
    if param_schedulers is not None and not allow_alpha_lr_schedule and \
            isinstance(param_schedulers, dict):
        bad = [type(s).__name__
               for s in param_schedulers.get(ALPHA_OPTIMIZER) or []
               if getattr(s, 'param_name', None) == 'lr']
        if bad:
            raise ValueError(
                f'the alpha learning rate would be scheduled by {bad}: DARTS '
                f'keeps it constant. A param_scheduler list applies to every '
                f'optimizer; key it by optimizer instead: param_scheduler='
                f'dict(weights=[...], alphas=[]) (or set train_cfg.'
                f'allow_alpha_lr_schedule=True)')
    return w_opt, a_opt
