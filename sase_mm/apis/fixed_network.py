"""A search config's fixed network, trained with a chosen attention.

SASE (arXiv 2411.08333) searches its block on a fixed network (ResNet-20 on
CIFAR-10) and judges it by training that network with the searched block.
``tools/analysis/evaluate_genotypes.py`` does that for any candidate
attention. This module turns a DARTS search config into the config of one
such training run:

* the model: the search model's ``supernet`` (a network of our own whose
  ``forward(x)`` returns logits and whose blocks take ``attn_cfg``), with
  ``attn_cfg`` replaced, wrapped in ``sase_mm.LogitsClassifier``;
* the data: the search's train and search halves together (mmengine's
  ``ConcatDataset``), evaluated on its held-out ``val_dataloader`` with its
  ``val_evaluator``;
* the schedule: its weight optimizer (``optim_wrapper.weights``) and weight
  schedulers (``param_scheduler.weights``, rescaled to the epochs), for
  ``train_cfg.max_epochs`` or the given epochs, in mmengine's
  ``EpochBasedTrainLoop``; no checkpoints (a run is short and is redone
  if interrupted); the given seed.
"""
import copy
import hashlib
import json
from typing import List, Optional

from mmengine.config import Config, ConfigDict

EXPECTED = (
    "a search config whose model is a sase_mm.DARTSSearch around a network "
    "of our own that returns logits and has an attention slot, e.g. "
    "model=dict(type='sase_mm.DARTSSearch', supernet=dict("
    "type='sase_mm.CifarResNet', num_classes=10, attn_cfg=dict("
    "type='sase_mm.SASESearch'))), with a held-out val_dataloader and "
    "val_evaluator (configs/search/sase_r8_digits.py, sase_r20_cifar10.py, "
    "sase_r20_cifar100.py)")

# Scheduler fields counted in epochs (or iterations): rescaled with them.
_SCHEDULE_FIELDS = ('begin', 'end', 'T_max', 'step_size', 'milestones')
# mmengine's "until the end" default of ``end`` (INF): left as it is.
_UNBOUNDED = 1 << 30


class FixedNetworkError(ValueError):
    """A config that has no fixed network to train; the message says what
    was expected."""


def _fail(config: str, why: str):
    raise FixedNetworkError(f'{config}: {why}. Expected {EXPECTED}.')


def fixed_network(cfg: Config, config: str = 'the config') -> ConfigDict:
    """The search model's network (``model.supernet``), checked.

    Args:
        cfg: a search config.
        config: its name, for the messages.

    Raises:
        FixedNetworkError: naming what the config has and what is expected.
    """
    from mmengine.model import BaseModel

    from ..models.search import DARTSSearch
    from ..registry import MODELS
    model = cfg.get('model')
    kind = model.get('type') if isinstance(model, dict) else None
    cls = MODELS.get(kind) if isinstance(kind, str) else kind
    if not (isinstance(cls, type) and issubclass(cls, DARTSSearch)):
        _fail(config, f'its model is {kind!r}, not a search model '
                      f'(sase_mm.DARTSSearch)')
    net = model.get('supernet')
    if not isinstance(net, dict):
        _fail(config, 'its model has no supernet')
    net_kind = net.get('type')
    if 'attn_cfg' not in net:
        _fail(config, f'its model.supernet ({net_kind!r}) has no attn_cfg '
                      f'(the attention slot a candidate goes in; an mm '
                      f'model\'s attention sits in its backbone)')
    net_cls = _resolve(net_kind, cfg.get('default_scope'))
    if not isinstance(net_cls, type):
        _fail(config, f'its model.supernet type {net_kind!r} is not '
                      f'registered')
    if issubclass(net_cls, BaseModel):
        _fail(config, f'its model.supernet is {net_kind!r}, an mm model '
                      f'(its outputs are its own), not a network returning '
                      f'logits')
    if net.get('num_classes', 1) <= 0:
        _fail(config, f'its model.supernet has num_classes='
                      f'{net["num_classes"]}: a backbone, not a classifier '
                      f'returning logits')
    return copy.deepcopy(net)


def _resolve(kind, scope: Optional[str]):
    """The class a model ``type`` names: sase_mm's, else the config's
    default scope's (as the Runner builds it)."""
    from ..registry import MODELS
    if not isinstance(kind, str):
        return kind
    cls = MODELS.get(kind)
    if cls is None and scope:
        with MODELS.switch_scope_and_registry(scope) as registry:
            cls = registry.get(kind)
    return cls


def rescale_schedulers(schedulers, from_epochs: int,
                       to_epochs: int) -> List[dict]:
    """The schedulers with their epoch (or iteration) fields
    (``begin``, ``end``, ``T_max``, ``step_size``, ``milestones``) scaled
    by ``to_epochs / from_epochs`` (rounded; at least 1 where 0 would
    mean nothing). A scheduler ending at ``from_epochs`` ends at
    ``to_epochs``."""
    if schedulers is None:
        return []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    out = []
    for s in schedulers:
        s = copy.deepcopy(dict(s))
        for key in _SCHEDULE_FIELDS:
            value = s.get(key)
            if key == 'milestones' and value is not None:
                s[key] = [max(1, round(v * to_epochs / from_epochs))
                          for v in value]
            elif isinstance(value, int) and value < _UNBOUNDED:
                scaled = round(value * to_epochs / from_epochs)
                s[key] = scaled if key == 'begin' else max(1, scaled)
        if 'end' in s and s['end'] <= s.get('begin', 0):
            s['end'] = s.get('begin', 0) + 1
        out.append(s)
    return out


def weight_schedule(cfg: Config, epochs: int):
    """The config's weight optimizer and schedulers for ``epochs``."""
    wrapper = cfg.get('optim_wrapper') or {}
    if 'weights' not in wrapper:
        raise FixedNetworkError(
            f'the search config has no weight optimizer '
            f'(optim_wrapper.weights); its optim_wrapper has keys '
            f'{sorted(wrapper)}. Expected {EXPECTED}.')
    optim = copy.deepcopy(wrapper['weights'])
    schedulers = cfg.get('param_scheduler')
    if isinstance(schedulers, dict) and 'type' not in schedulers:
        schedulers = schedulers.get('weights')
    max_epochs = cfg.train_cfg.max_epochs
    return optim, rescale_schedulers(schedulers, max_epochs, epochs)


def recipe(cfg: Config, epochs: Optional[int] = None,
           config: str = 'the config') -> dict:
    """What every run of a study shares: the network without its
    attention, the data, the evaluator, the optimizer, the schedulers, the
    epochs (``train_cfg.max_epochs`` when None).

    Raises:
        FixedNetworkError: the config has no fixed network, no held-out
            split or no weight optimizer.
    """
    network = fixed_network(cfg, config)
    network.pop('attn_cfg')
    for key in ('val_dataloader', 'val_evaluator'):
        if not cfg.get(key):
            _fail(config, f'it has no {key} (the held-out split the '
                          f'candidates are compared on)')
    train = cfg.get('train_dataloader')
    search = cfg.get('train_cfg', {}).get('search_dataloader')
    if not train or not search:
        _fail(config, 'it lacks train_dataloader or '
                      'train_cfg.search_dataloader (the two halves the '
                      'runs train on)')
    epochs = epochs or cfg.train_cfg.max_epochs
    optim, schedulers = weight_schedule(cfg, epochs)
    loader = copy.deepcopy(train)
    loader['dataset'] = dict(
        type='ConcatDataset',
        datasets=[copy.deepcopy(train['dataset']),
                  copy.deepcopy(search['dataset'])])
    data_preprocessor = cfg.model.get('data_preprocessor')
    return _plain(dict(
        network=network, data_preprocessor=data_preprocessor,
        train_dataloader=loader, val_dataloader=cfg.val_dataloader,
        val_evaluator=cfg.val_evaluator, optim_wrapper=optim,
        param_scheduler=schedulers, epochs=epochs,
        deterministic=cfg.get('randomness', {}).get('deterministic',
                                                     False)))


def recipe_hash(rec: dict) -> str:
    """SHA-256 of a recipe (its JSON, keys sorted): two studies may share
    runs only when their recipes hash alike."""
    text = json.dumps(rec, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def run_config(cfg: Config, rec: dict, attn_cfg: Optional[dict],
               seed: int, work_dir: str, name: str) -> Config:
    """The config of one run: ``rec`` (:func:`recipe`) with the attention
    ``attn_cfg`` (None: none) and ``seed``, in ``work_dir``; the search
    config gives the rest (scope, hooks but the checkpoint, environment,
    logging, visualizer).

    Args:
        name: the run's unique name (mmengine's experiment name: its logger
            and visualizer are looked up by it).
    """
    epochs = rec['epochs']
    model = dict(type='sase_mm.LogitsClassifier',
                 network=dict(copy.deepcopy(rec['network']),
                              attn_cfg=copy.deepcopy(attn_cfg)))
    if rec['data_preprocessor'] is not None:
        model['data_preprocessor'] = copy.deepcopy(rec['data_preprocessor'])
    hooks = copy.deepcopy(dict(cfg.get('default_hooks') or {}))
    hooks['checkpoint'] = None  # a run is redone, never resumed
    out = dict(
        default_scope=cfg.get('default_scope', 'sase_mm'),
        work_dir=work_dir, experiment_name=name, model=model,
        train_dataloader=copy.deepcopy(rec['train_dataloader']),
        # Validated once, after the last epoch (by the caller).
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=epochs,
                       val_begin=epochs + 1),
        val_dataloader=copy.deepcopy(rec['val_dataloader']),
        val_evaluator=copy.deepcopy(rec['val_evaluator']),
        val_cfg=dict(),
        optim_wrapper=copy.deepcopy(rec['optim_wrapper']),
        param_scheduler=copy.deepcopy(rec['param_scheduler']),
        default_hooks=hooks, custom_hooks=[],
        randomness=dict(seed=seed, deterministic=rec['deterministic']),
        launcher='none', load_from=None, resume=False)
    for key in ('env_cfg', 'log_processor', 'log_level', 'visualizer',
                'custom_imports'):
        if cfg.get(key) is not None:
            out[key] = copy.deepcopy(cfg[key])
    return Config(out)


def _plain(obj):
    """ConfigDicts and tuples as plain dicts and lists (JSON's view)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
