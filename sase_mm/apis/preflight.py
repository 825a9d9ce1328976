"""Checks run before training / testing, so users meet clear messages.

For the downstream experiments of SASE (arXiv 2411.08333): the COCO and
ImageNet configs need data in a given layout and the detectors need the
ImageNet-trained backbone of the same depth and attention block. Without
these checks, mmengine fails late (after building everything) with a bare
``No such file`` or, worse, loads a checkpoint of the wrong depth with a
warning and trains from a half-initialised backbone. Each check names the
file, the config key that points at it, and what was expected.

:func:`genotype_files` is the one walk over a config for the genotype files
it names; the tools inline them (``tool_args.inline_genotype_files``) and
check them (:func:`check_genotype_files`) with it.
"""
import os
import os.path as osp
import re
from typing import (Iterator, List, Mapping, MutableMapping, Optional,
                    Tuple)

import torch.nn as nn

# Where each dataset type's files go (shown when they are missing).
DATA_LAYOUTS = {
    'CocoDataset': (
        'COCO 2017 in mmdetection\'s layout:\n'
        '  <data_root>/annotations/instances_train2017.json\n'
        '  <data_root>/annotations/instances_val2017.json\n'
        '  <data_root>/train2017/*.jpg\n'
        '  <data_root>/val2017/*.jpg\n'
        '(images and annotations from https://cocodataset.org)'),
    'ImageNet': (
        'ImageNet-1k in mmpretrain\'s layout:\n'
        '  <data_root>/train/n01440764/*.JPEG ...  (one folder per class)\n'
        '  <data_root>/val/*.JPEG                 (or one folder per class)\n'
        '  <data_root>/meta/train.txt, <data_root>/meta/val.txt\n'
        '    (`relative/path.JPEG label` lines; optional when train/ and '
        'val/ both hold\n     one folder per class, all 1000 of them)'),
    'CustomDataset': (
        'an image folder in mmpretrain\'s CustomDataset layout:\n'
        '  <data_root>/<data_prefix>/<class name>/*.JPEG (or .jpg, .png)\n'
        '    (one sub-folder per class; or an ann_file of '
        '`relative/path label` lines)'),
}

_BLOCK_PART_RE = re.compile(r'^layer\d+\.\d+\.([^.]+)\.')
_PLAIN_BLOCK_PARTS = {'conv1', 'conv2', 'conv3', 'bn1', 'bn2', 'bn3',
                      'downsample'}


def _is_remote(path: str) -> bool:
    return '://' in str(path)


# ------------------------------------------------------------------ data
def _leaf_datasets(ds_cfg, where: str) -> Iterator[Tuple[str, Mapping]]:
    """Yields (config key, dataset cfg), unwrapping Repeat/Concat/... ."""
    if not isinstance(ds_cfg, Mapping):
        return
    if isinstance(ds_cfg.get('datasets'), (list, tuple)):
        for i, sub in enumerate(ds_cfg['datasets']):
            yield from _leaf_datasets(sub, f'{where}.datasets.{i}')
    elif isinstance(ds_cfg.get('dataset'), Mapping):
        yield from _leaf_datasets(ds_cfg['dataset'], f'{where}.dataset')
    else:
        yield where, ds_cfg


def _own_dataset(ds_cfg: Mapping):
    """The sase_mm dataset class a config names, or None."""
    kind = ds_cfg.get('type')
    if not isinstance(kind, str) or not kind.startswith('sase_mm.'):
        return None
    from ..registry import DATASETS
    return DATASETS.get(kind)


def dataset_paths(ds_cfg: Mapping) -> List[Tuple[str, str]]:
    """The local files a dataset config reads: [(config field, path)].

    sase_mm's own datasets say which files they read (``files_needed``:
    none for the digits, which scikit-learn ships); mmdet / mmpretrain
    datasets are read from ``data_root``, ``ann_file``, ``data_prefix`` and
    mmpretrain's ``split``."""
    own = _own_dataset(ds_cfg)
    if own is not None and hasattr(own, 'files_needed'):
        return [(k, p) for k, p in own.files_needed(ds_cfg)
                if not _is_remote(p)]
    root = ds_cfg.get('data_root') or ''
    out = []
    ann = ds_cfg.get('ann_file') or ''
    if ann:
        out.append(('ann_file', osp.join(root, ann)))
    prefix = ds_cfg.get('data_prefix') or ''
    if isinstance(prefix, Mapping):
        out += [(f'data_prefix.{k}', osp.join(root, v))
                for k, v in prefix.items() if v]
    elif prefix:
        out.append(('data_prefix', osp.join(root, prefix)))
    elif ds_cfg.get('split'):
        # mmpretrain: split='train' reads <data_root>/train.
        out.append(('split', osp.join(root, ds_cfg['split'])))
    if not out and root:
        out.append(('data_root', root))
    return [(k, p) for k, p in out if not _is_remote(p)]


class MissingDataError(FileNotFoundError):
    """Dataset files a config needs are not there (the message says where
    they go and how to point the config at them)."""


def _get(cfg, dotted: str):
    """``cfg[a][b]`` for ``'a.b'`` (a Config or dicts), None if absent."""
    for part in dotted.split('.'):
        cfg = cfg.get(part) if hasattr(cfg, 'get') else None
    return cfg


def check_data_paths(cfg, dataloaders=('train_dataloader',)) -> None:
    """Raises :class:`MissingDataError` naming every missing dataset file.

    Args:
        cfg (Config | dict): a full mmengine config.
        dataloaders: the dataloader keys to check, dotted for nested ones
            (``train_cfg.search_dataloader``); absent ones are skipped.
    """
    problems = []
    for key in dataloaders:
        loader = _get(cfg, key)
        if not isinstance(loader, Mapping):
            continue
        for where, ds in _leaf_datasets(loader.get('dataset'),
                                        f'{key}.dataset'):
            missing = [(field, path) for field, path in dataset_paths(ds)
                       if not osp.exists(path)]
            if missing:
                problems.append((where, ds, missing))
        # e.g. CocoMetric reads the annotations itself.
        ev_key = key.replace('_dataloader', '_evaluator')
        evaluators = cfg.get(ev_key) if ev_key != key else None
        if isinstance(evaluators, Mapping):
            evaluators = [evaluators]
        for i, ev in enumerate(evaluators or []):
            ann = ev.get('ann_file') if isinstance(ev, Mapping) else None
            if ann and not _is_remote(ann) and not osp.exists(ann):
                where = ev_key if isinstance(cfg.get(ev_key), Mapping) \
                    else f'{ev_key}.{i}'
                problems.append((where, dict(type=ev.get('type', '?')),
                                 [('ann_file', ann)]))
    if not problems:
        return
    lines, layouts = [], {}
    for where, ds, missing in problems:
        dtype = str(ds.get('type', '?')).split('.')[-1]
        for field, path in missing:
            lines.append(f'  {path}  ({where}.{field}, {dtype}) does not '
                         f'exist')
        own = _own_dataset(ds)
        if dtype in DATA_LAYOUTS:
            layouts[dtype] = DATA_LAYOUTS[dtype]
        elif own is not None and getattr(own, 'LAYOUT', ''):
            layouts[dtype] = own.LAYOUT
    msg = (f'dataset files are missing (relative paths are from '
           f'{os.getcwd()}):\n' + '\n'.join(lines))
    for text in layouts.values():
        msg += f'\nExpected {text}'
    fixes = []
    for where, ds, missing in problems:
        field = 'data_root' if 'data_root' in ds else missing[0][0]
        fix = f'{where}.{field}=PATH'
        if fix not in fixes:
            fixes.append(fix)
    msg += ('\nPut the data there (a symlink is fine), or point the config '
            'at your copy: --cfg-options ' + ' '.join(fixes))
    raise MissingDataError(msg)


def genotype_files(cfg) -> List[Tuple[str, MutableMapping]]:
    """Every ``genotype=<path>`` a config names: a string that is neither a
    registered genotype's name nor an inline list (text starting with
    ``[`` or ``{``).

    Args:
        cfg (Config | dict): a config, or a part of one.

    Returns:
        list: ``(dotted config key, the dict holding it)`` pairs, in the
        config's order; ``parent['genotype']`` is the path.
    """
    from mmengine.config import Config

    from ..models.sase.genotype import GENOTYPES
    found = []

    def walk(node, where):
        if isinstance(node, Mapping):
            for key, value in node.items():
                here = f'{where}.{key}' if where else str(key)
                if key == 'genotype' and isinstance(value, str) and \
                        value not in GENOTYPES and not value.lstrip(
                        ).startswith(('[', '{')):
                    found.append((here, node))
                else:
                    walk(value, here)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f'{where}.{i}')

    # A Config is no Mapping; its dict is, and edits to it are the config's.
    walk(cfg._cfg_dict if isinstance(cfg, Config) else cfg, '')
    return found


def check_genotype_files(cfg) -> None:
    """Reads every ``genotype=PATH`` the config names (parsed, never
    executed), so that a missing or malformed file stops the run before
    anything is built, with the file's name and the accepted forms."""
    from ..models.sase.genotype import Genotype
    for where, parent in genotype_files(cfg):
        path = parent['genotype']
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'{where}: genotype file {path!r} does not exist '
                f'(relative paths are from {os.getcwd()})')
        Genotype.load(path)


def check_cost_file(cfg) -> None:
    """Builds ``model.arch_cost`` (the cost-aware search term) when the
    config sets it, so that a missing or malformed costs file stops the run
    before anything is built (``models/search/cost.py`` names the file and
    the expected form)."""
    from ..models.search.cost import ArchCost
    arch_cost = (cfg.get('model') or {}).get('arch_cost')
    if arch_cost is not None:
        ArchCost.build(arch_cost)


# ------------------------------------------------------- pretrained weights
def pretrained_init_cfg(model_cfg: Mapping) -> Optional[Mapping]:
    """``model.backbone.init_cfg`` when it loads a checkpoint, else None."""
    backbone = (model_cfg or {}).get('backbone') or {}
    init = backbone.get('init_cfg') if isinstance(backbone, Mapping) else None
    if isinstance(init, Mapping) and init.get('type') == 'Pretrained':
        return init
    return None


def _producer_hint(checkpoint: str) -> str:
    """Which of sase_mm's configs trains a checkpoint of this name."""
    stem = osp.splitext(osp.basename(str(checkpoint)))[0]
    root = osp.join(osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))), 'configs')
    for sub in ('imagenet', osp.join('imagenet', 'baselines')):
        if osp.isfile(osp.join(root, sub, stem + '.py')):
            cfg = f'configs/{sub}/{stem}.py'.replace(os.sep, '/')
            return (f'It is written by `python tools/train.py {cfg}` (copy '
                    f'its last checkpoint, e.g. work_dirs/{stem}/'
                    f'epoch_100.pth, there). ')
    return ''


def check_pretrained_exists(cfg) -> None:
    """Raises when ``model.backbone.init_cfg`` names a local file that is
    not there (URLs are left to mmengine)."""
    init = pretrained_init_cfg(cfg.get('model'))
    if init is None:
        return
    ckpt = init.get('checkpoint')
    fix = ('Set it with --cfg-options model.backbone.init_cfg.checkpoint='
           'PATH, or train the backbone from scratch (not the paper\'s '
           'setting) with --cfg-options model.backbone.init_cfg=None.')
    if not ckpt:
        raise ValueError('model.backbone.init_cfg loads a pretrained '
                         'backbone but names no checkpoint. ' + fix)
    if _is_remote(ckpt) or osp.isfile(ckpt):
        return
    raise FileNotFoundError(
        f'the pretrained backbone checkpoint {ckpt!r} '
        f'(model.backbone.init_cfg.checkpoint) does not exist (relative '
        f'paths are from {os.getcwd()}). The detector configs start from an '
        f'ImageNet-trained backbone of the same depth and attention block. '
        + _producer_hint(ckpt) + fix)


def _describe_resnet(keys) -> str:
    """'ResNet-101 (Bottleneck, blocks per stage (3, 4, 23, 3)) with
    `attention` in its blocks', read off state-dict keys (the converter's
    reader, ``reference_layout.infer_arch``)."""
    from .reference_layout import ConversionError, depth_of, infer_arch
    keys = [k[len('backbone.'):] if k.startswith('backbone.') else k
            for k in keys]
    try:
        block, per_stage = infer_arch(keys)
    except ConversionError:
        return 'no ResNet stages (`layerI.J.*` keys)'
    parts = {m.group(1) for m in map(_BLOCK_PART_RE.match, keys) if m}
    kind = 'Bottleneck' if block == 'bottleneck' else 'BasicBlock'
    depth = depth_of(block, per_stage)
    name = f'ResNet-{depth}' if depth else 'a ResNet'
    extra = sorted(parts - _PLAIN_BLOCK_PARTS)
    attn = (f'with {", ".join(f"`{e}`" for e in extra)} modules in its '
            f'blocks' if extra else 'with no attention modules in its blocks')
    return f'{name} ({kind}, blocks per stage {per_stage}) {attn}'


def weights_to_load(path: str, prefix: Optional[str] = None,
                    what: str = 'model.backbone.init_cfg.checkpoint'
                    ) -> Mapping:
    """The weights mmengine loads from a checkpoint into a module.

    With ``prefix``, those ``init_cfg=dict(type='Pretrained', prefix=...)``
    loads (mmengine's ``_load_checkpoint_with_prefix``: the keys under the
    prefix, stripped); without, those of ``load_checkpoint`` and a Runner's
    ``load_from``: the checkpoint's ``state_dict``, the ``module.`` of a
    DataParallel model stripped (its default ``revise_keys``). Both read
    through mmengine's ``CheckpointLoader``, which ``import sase_mm`` points
    at sase_mm's safe loader (``utils/safe_checkpoint.py``).

    Args:
        path (str): the checkpoint.
        prefix (str, optional): the part of its keys to use.
        what (str): how a message names the checkpoint's origin.

    Raises:
        ValueError: no state dict, or no key under ``prefix`` (naming the
            keys there are).
    """
    # mmengine's readers are private: its public load_checkpoint loads into
    # a module, and the checks here compare keys before anything loads.
    from mmengine.runner.checkpoint import (_load_checkpoint,
                                            _load_checkpoint_with_prefix)

    def state_dict():
        ckpt = _load_checkpoint(path, map_location='cpu')
        if not isinstance(ckpt, dict):  # as load_checkpoint refuses it
            raise ValueError(f'checkpoint {path!r} ({what}) holds no state '
                             f'dict but a {type(ckpt).__name__}')
        return ckpt.get('state_dict', ckpt)

    if not prefix:
        return {re.sub(r'^module\.', '', k): v
                for k, v in state_dict().items()}
    prefix = prefix if prefix.endswith('.') else prefix + '.'
    try:
        state = _load_checkpoint_with_prefix(prefix, path, map_location='cpu')
    except AssertionError:  # mmengine asserts a key under the prefix
        state = {}
    if state:
        return state
    tops = sorted({k.split('.')[0] + '.' for k in state_dict()})
    raise ValueError(
        f'checkpoint {path!r} has no weights under the prefix '
        f'{prefix!r} ({what} with prefix); its keys '
        f'start with {tops[:8]}. Expected an mmpretrain '
        f'ImageClassifier checkpoint (`backbone.*` keys); for a bare '
        f'backbone state dict set prefix=None.')


def check_pretrained_matches(
        backbone: nn.Module, init_cfg: Mapping,
        ignore_unexpected=(r'^fc\.', r'^head\.'),
        what: str = 'model.backbone.init_cfg.checkpoint'):
    """Raises ValueError when the checkpoint of ``init_cfg`` does not fit
    ``backbone`` key for key (e.g. a ResNet-101 checkpoint for a ResNet-50,
    or a plain ResNet for a SASE one).

    Args:
        backbone (nn.Module): the module the checkpoint loads into (a
            backbone, or a whole model with ``init_cfg.prefix`` unset).
        init_cfg (dict): ``checkpoint`` path and optional ``prefix`` (the
            part of the checkpoint's keys to use, stripped).
        ignore_unexpected: patterns of checkpoint keys the module may lack
            (a classifier's head when loading a backbone).
        what (str): how the message names the checkpoint's origin.

    Returns:
        dict: the number of tensors that load (``loaded``) and the keys the
        checkpoint lacks / adds (``missing``, ``unexpected``), both empty.
    """
    path = init_cfg['checkpoint']
    prefix = init_cfg.get('prefix')
    state = weights_to_load(path, prefix, what)
    own = backbone.state_dict()
    missing = [k for k in own if k not in state
               and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state if k not in own and not any(
        re.search(p, k) for p in ignore_unexpected)]
    shapes = [f'{k}: checkpoint {tuple(state[k].shape)} vs model '
              f'{tuple(own[k].shape)}' for k in own
              if k in state and hasattr(state[k], 'shape')
              and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        hint = (' (for a detector backbone: the ImageNet checkpoint of the '
                'matching configs/imagenet/ config, e.g. '
                'sase_r101_8xb16_in1k.py for the sase_r101_* detectors)'
                if prefix else '')

        def some(items):
            head = ', '.join(items[:4])
            return head + (f', ... ({len(items)} in all)'
                           if len(items) > 4 else '')
        detail = [f'missing from the checkpoint: {some(missing)}'
                  if missing else '',
                  f'not in the model: {some(unexpected)}'
                  if unexpected else '',
                  f'shape mismatches: {some(shapes)}' if shapes else '']
        raise ValueError(
            f'checkpoint {path!r} ({what}) does not fit the model: the '
            f'checkpoint holds '
            f'{_describe_resnet(state)}, the config builds '
            f'{_describe_resnet(own)}.\n  ' +
            '\n  '.join(d for d in detail if d) +
            f'\nExpected a checkpoint of the same depth and attention block'
            f'{hint}.')
    return dict(loaded=len(own), missing=missing, unexpected=unexpected)
