"""Converting the SASE authors' released checkpoints to this project's layout.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333). The authors' ImageNet models are torchvision ResNets
whose Bottleneck has an ``attention`` submodule; their detectors are mmdet
ResNets (keys under ``backbone.``) with the same submodule (docs/spec.md
section 8). This module maps them to the keys of :class:`SASEResNet`:

* ImageNet: ``<torchvision key>`` -> ``backbone.<key>``, ``fc.*`` ->
  ``head.fc.*`` (mmpretrain ``ImageClassifier`` with ``LinearClsHead``);
* detectors: ``backbone.*`` kept, everything else (neck, heads) unchanged;
* the searched block, under ``...layerI.J.attention.``: see
  :data:`REFERENCE_ATTENTION_KEYS`. ResNet naming is otherwise identical
  (``conv1``, ``bn1``, ``layerI.J.convK``, ``layerI.J.bnK``,
  ``layerI.J.downsample.{0,1}``).

The result is checked against the keys and shapes of the model it is meant
for: every source key must be consumed and every expected key present, or
the conversion fails naming them.

The library side of ``tools/convert_reference_checkpoint.py``: it reads a
checkpoint with the safe loader, converts it and writes the result
atomically. Its reading of ResNet keys (:func:`infer_arch`,
:func:`depth_of`) also serves the pretrained-weights check of
``apis/preflight.py``.
"""
import functools
import os
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from ..utils.atomic import atomic_torch_save

# Reference key under ``attention.`` -> our SASE block's key (the paper's
# searched block; docs/spec.md sections 4 and 8).
REFERENCE_ATTENTION_KEYS: Dict[str, str] = OrderedDict([
    ('_ops.0.mixer.mixer.0.weight', 'edges.0.merge.weight'),  # GAP+GMP
    ('_ops.1.0.weight', 'edges.1.reduce.weight'),  # FC reduce
    ('_ops.1.2.weight', 'edges.1.expand.weight'),  # FC expand
    ('_ops.2.alpha', 'edges.2.weight'),  # channel affine a
    ('_ops.2.beta', 'edges.2.bias'),  # channel affine b
    ('_ops.5.0.weight', 'edges.5.convs.0.weight'),  # 2 x conv 3x3
    ('_ops.5.2.weight', 'edges.5.convs.1.weight'),
    ('mixer.0.weight', 'mixer.0.weight'),  # spatial mixer conv + BN
    ('mixer.1.weight', 'mixer.1.weight'),
    ('mixer.1.bias', 'mixer.1.bias'),
    ('mixer.1.running_mean', 'mixer.1.running_mean'),
    ('mixer.1.running_var', 'mixer.1.running_var'),
    ('mixer.1.num_batches_tracked', 'mixer.1.num_batches_tracked'),
])
ATTENTION = 'attention'  # the submodule name, the reference's and ours
CLASSIFIER, DETECTOR = 'classifier', 'detector'
_BLOCK_RE = re.compile(r'^layer(\d+)\.(\d+)\.')


class ConversionError(ValueError):
    """A checkpoint that cannot be converted; the message says why."""


def _fmt(keys, limit: int = 20) -> str:
    keys = sorted(keys)
    more = f' ... and {len(keys) - limit} more' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def unwrap(ckpt) -> Tuple[Dict[str, torch.Tensor], str]:
    """The state_dict inside a checkpoint, and where it was found.

    Accepts a raw state_dict, ``{'state_dict': ...}`` (mmengine / mmdet) and
    ``{'model': ...}``; strips a ``module.`` prefix (DataParallel) carried by
    every key.
    """
    if not isinstance(ckpt, Mapping):
        raise ConversionError(f'expected a state_dict or a dict holding one, '
                              f'got {type(ckpt).__name__}')
    where = 'raw state_dict'
    for wrapper in ('state_dict', 'model'):
        if wrapper in ckpt and isinstance(ckpt[wrapper], Mapping):
            ckpt, where = ckpt[wrapper], f"checkpoint['{wrapper}']"
            break
    non_tensors = [k for k, v in ckpt.items() if not torch.is_tensor(v)]
    if non_tensors:
        raise ConversionError(
            f'{where} is not a state_dict: entries '
            f'{_fmt(map(str, non_tensors))}'
            f' are not tensors (expected a raw state_dict, or a dict with a '
            f"'state_dict' or 'model' entry)")
    sd = OrderedDict(ckpt)
    if sd and all(k.startswith('module.') for k in sd):
        sd = OrderedDict((k[len('module.'):], v) for k, v in sd.items())
        where += " ('module.' prefix stripped)"
    return sd, where


def detect_layout(sd: Mapping[str, torch.Tensor]) -> str:
    """``'detector'`` (mmdet keys under ``backbone.``) or ``'classifier'``
    (torchvision keys)."""
    if any(k.startswith('backbone.') for k in sd):
        return DETECTOR
    if 'conv1.weight' in sd or any(_BLOCK_RE.match(k) for k in sd):
        return CLASSIFIER
    raise ConversionError(
        f'not a ResNet checkpoint of the reference layout: no '
        f"'backbone.*' keys (mmdet detector) and no 'conv1.weight' / "
        f"'layerI.J.*' keys (torchvision ResNet); first keys: "
        f'{_fmt(list(sd)[:10])}')


def infer_arch(backbone_keys) -> Tuple[str, Tuple[int, ...]]:
    """(block type, blocks per stage) read off ResNet keys without prefix."""
    blocks: Dict[int, set] = {}
    bottleneck = False
    for k in backbone_keys:
        m = _BLOCK_RE.match(k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
            bottleneck |= k.startswith(f'{m.group(0)}conv3.')
    if not blocks:
        raise ConversionError('no residual blocks (layerI.J.*) found')
    stages = tuple(len(blocks.get(i, ())) for i in range(1, max(blocks) + 1))
    return ('bottleneck' if bottleneck else 'basic'), stages


def depth_of(block: str, stages: Tuple[int, ...]) -> Optional[int]:
    """The ResNet depth with these blocks per stage, or None."""
    from ..models.backbones.sase_resnet import SASEBottleneck, SASEResNet
    for depth, (cls, layout) in SASEResNet.arch_settings.items():
        is_bottleneck = issubclass(cls, SASEBottleneck)
        if tuple(layout) == tuple(stages) and is_bottleneck == (
                block == 'bottleneck'):
            return depth
    return None


def expected_backbone_shapes(depth: int, attention: bool
                             ) -> Dict[str, torch.Size]:
    """Keys and shapes of ``SASEResNet(depth)``'s state_dict (default
    attention, or plain)."""
    return OrderedDict(_expected_backbone_shapes(depth, attention))


@functools.lru_cache(maxsize=None)
def _expected_backbone_shapes(depth, attention):
    from ..models.backbones.sase_resnet import SASEResNet
    model = SASEResNet(depth, **({} if attention else {'attn_cfg': None}))
    return tuple((k, v.shape) for k, v in model.state_dict().items())


def _convert_attention_key(key: str) -> Optional[str]:
    """``...attention.<ref>`` -> ``...attention.<ours>``; None if unknown."""
    head, sep, tail = key.partition(f'.{ATTENTION}.')
    if not sep:
        return key
    ours = REFERENCE_ATTENTION_KEYS.get(tail)
    return None if ours is None else f'{head}.{ATTENTION}.{ours}'


def convert_state_dict(sd: Mapping[str, torch.Tensor],
                       depth: Optional[int] = None,
                       layout: Optional[str] = None
                       ) -> Tuple['OrderedDict[str, torch.Tensor]', dict]:
    """Converts a reference state_dict to this project's layout.

    Args:
        sd: the unwrapped reference state_dict.
        depth: the ResNet depth expected (None: inferred from the keys).
        layout: ``'classifier'`` or ``'detector'`` (None: detected).

    Returns:
        (converted state_dict, summary dict).

    Raises:
        ConversionError: unknown / missing keys, shape mismatches or a
            checkpoint of another depth, each named in the message.
    """
    layout = layout or detect_layout(sd)
    if layout not in (CLASSIFIER, DETECTOR):
        raise ConversionError(f'layout must be {CLASSIFIER!r} or '
                              f'{DETECTOR!r}, got {layout!r}')
    if layout == DETECTOR:
        backbone = OrderedDict((k[len('backbone.'):], v) for k, v in sd.items()
                               if k.startswith('backbone.'))
        others = OrderedDict(
            (k, v) for k, v in sd.items() if not k.startswith('backbone.'))
    else:
        backbone = OrderedDict((k, v) for k, v in sd.items()
                               if not k.startswith('fc.'))
        others = OrderedDict((k, v) for k, v in sd.items()
                             if k.startswith('fc.'))
    block, stages = infer_arch(backbone)
    found = depth_of(block, stages)
    stage_txt = f'{block} blocks per stage {stages}'
    if found is None:
        from ..models.backbones.sase_resnet import SASEResNet
        raise ConversionError(
            f'the checkpoint has {stage_txt}, which is no ResNet depth this '
            f'project builds (valid: {sorted(SASEResNet.arch_settings)})')
    if depth is not None and depth != found:
        raise ConversionError(
            f'wrong depth: the checkpoint is a ResNet-{found} ({stage_txt}) '
            f'but depth {depth} was asked for; convert it as depth {found} '
            f'and use it with a ResNet-{found} config')
    attention = any(f'.{ATTENTION}.' in k for k in backbone)

    # Rename, then check against the model the result is meant for.
    converted = OrderedDict()
    unknown: List[str] = []
    for k, v in backbone.items():
        new = _convert_attention_key(k)
        if new is None:
            unknown.append(('backbone.' if layout == DETECTOR else '') + k)
        else:
            converted[new] = v
    expected = expected_backbone_shapes(found, attention)
    unknown += [('backbone.' if layout == DETECTOR else '') + k
                for k in converted if k not in expected]
    filled = []
    for k in expected:
        # Checkpoints from before torch 0.4.1 lack BN's counter; torch
        # itself fills it in at load time, so do the same.
        if k not in converted and k.endswith('num_batches_tracked'):
            converted[k] = torch.tensor(0, dtype=torch.long)
            filled.append(k)
    missing = [k for k in expected if k not in converted]
    if unknown or missing:
        hint = ('' if not any(f'.{ATTENTION}.' in k for k in unknown) else
                '. Known attention keys (the searched block, docs/spec.md '
                f'section 8): {", ".join(REFERENCE_ATTENTION_KEYS)}')
        raise ConversionError(
            f'cannot convert this ResNet-{found} '
            f'{"+ SASE " if attention else ""}{layout} checkpoint: '
            f'unknown keys: [{_fmt(unknown)}]; missing keys: '
            f'[{_fmt(missing)}]{hint}')
    bad = [f'{k}: {tuple(converted[k].shape)} != expected '
           f'{tuple(shape)}' for k, shape in expected.items()
           if converted[k].shape != shape]
    out = OrderedDict(('backbone.' + k, converted[k]) for k in expected)

    if layout == CLASSIFIER:
        head = {'fc.weight', 'fc.bias'}
        if set(others) != head:
            raise ConversionError(
                f'classifier head: expected keys fc.weight, fc.bias; unknown '
                f'keys: [{_fmt(set(others) - head)}]; missing keys: '
                f'[{_fmt(head - set(others))}]')
        w, b = others['fc.weight'], others['fc.bias']
        last_bn = 'bn3' if block == 'bottleneck' else 'bn2'
        width = expected[f'layer{len(stages)}.0.{last_bn}.weight'][0]
        if w.dim() != 2 or w.shape[1] != width or b.shape != w.shape[:1]:
            bad.append(f'fc.weight {tuple(w.shape)} / fc.bias '
                       f'{tuple(b.shape)}: expected (num_classes, {width}) '
                       f'/ (num_classes,)')
        out['head.fc.weight'], out['head.fc.bias'] = w, b
    else:
        out.update(others)
    if bad:
        raise ConversionError('shape mismatch: ' + '; '.join(bad))

    n_attn = sum(1 for k in backbone if k.endswith(
        f'.{ATTENTION}.mixer.0.weight'))
    summary = OrderedDict(
        layout=layout, depth=found, stages=stages, attention=attention,
        attention_blocks=n_attn, tensors=len(out),
        backbone_tensors=len(expected), filled_num_batches_tracked=len(filled),
        parameters=int(sum(v.numel() for k, v in out.items()
                           if v.is_floating_point()
                           and 'running_' not in k)),
        passthrough=sorted({k.split('.')[0] for k in others})
        if layout == DETECTOR else [],
        num_classes=int(out['head.fc.weight'].shape[0])
        if layout == CLASSIFIER else None)
    return out, summary


def load_reference(path: str):
    """Loads a checkpoint with the project's safe loader
    (:func:`sase_mm.utils.load_checkpoint`: ``weights_only=True``).

    Raises:
        FileNotFoundError: no such file.
        UntrustedCheckpointError: the file names code (nothing is run).
        ConversionError: the file is not a readable checkpoint.
    """
    from ..utils.safe_checkpoint import CheckpointReadError, load_checkpoint
    try:
        return load_checkpoint(path)
    except CheckpointReadError as err:
        raise ConversionError(str(err)) from err


def convert_checkpoint(src: str, dst: str, depth: Optional[int] = None,
                       layout: Optional[str] = None) -> dict:
    """Reads ``src``, converts it, writes ``{'state_dict', 'meta'}`` to
    ``dst`` atomically; returns the summary."""
    ckpt = load_reference(src)
    sd, where = unwrap(ckpt)
    out, summary = convert_state_dict(sd, depth=depth, layout=layout)
    summary['source'] = where
    meta = dict(converted_from=os.path.basename(src),
                converter='sase_mm reference_layout',
                layout=summary['layout'], depth=summary['depth'])
    src_meta = ckpt.get('meta') if isinstance(ckpt, Mapping) else None
    if isinstance(src_meta, Mapping) and 'dataset_meta' in src_meta:
        meta['dataset_meta'] = src_meta['dataset_meta']
    atomic_torch_save(dict(state_dict=out, meta=meta), dst)
    return summary
