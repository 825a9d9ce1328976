"""Export a SASE-ResNet classifier or a detector's backbone to ONNX (sase_mm).

SASE (*Searching Architecture for Squeeze and Excitation operations*, arXiv
2411.08333) plugs a searched attention block into ResNets. This tool
exports, from an mmengine config and a checkpoint,

* an mmpretrain ``ImageClassifier`` (e.g. ``configs/imagenet/``): the
  normalised image (N, 3, H, W) -> logits ``logits`` (N, K);
* an mmdet detector (``configs/faster_rcnn/``, ``configs/mask_rcnn/``): its
  backbone, the normalised image -> the stage features ``feat<i>`` (one per
  ``out_indices``). Neck and heads need mmdeploy's rewrites; they are not
  exported. ``--backbone-only`` does the same for a classifier.

The mmpretrain / mmdeploy conventions: input ``input``, ``--opset-version``
(default 17), ``--shape H W`` (default 224 x 224 for classifiers, 800 x 1333
for detectors), batch and spatial axes dynamic (``--no-dynamic-export`` for
a fixed shape), ``--verify`` to compare onnxruntime with PyTorch at the
export shape and at a second one (``--verify-shape``; a larger batch when
the batch is dynamic), relative tolerance ``--rtol`` (1e-4). The
normalisation (the config's data preprocessor: mean, std, channel order)
is not part of the graph; it is printed and stored in the model's metadata
(``mean``, ``std``, ``channel_order``).

Any genotype exports, not only the paper's: the export runs the block's
generic graph (eval mode, no grad, so never the fused training node) with
sase_mm's layers set exportable (``sase_mm.models.layers.exportable()``):
each layer then runs its plain form, with the same values: each
statistic's plain formula in place of its hand-written autograd node, and
shape-independent forms of the few operations whose fast forms would be
frozen at the export size (per-sample convolutions instead of
batch-grouped ones; resizing and pooling matrices built for the runtime
size). A search supernet (``sase_mm.DARTSSearch``, ``SASESearch`` blocks)
is refused: export the block it derived (its ``genotype.json`` in a
downstream config) instead.

Checkpoints are read by mmengine (``load_checkpoint``, the prefix variant
for a backbone), hence by sase_mm's safe loader, which ``import sase_mm``
installs into mmengine.

Usage::

    python tools/deployment/pytorch2onnx.py \\
        configs/imagenet/sase_r50_8xb16_in1k.py sase_r50.pth sase_r50.onnx \\
        --verify
    python tools/deployment/pytorch2onnx.py \\
        configs/faster_rcnn/sase_r50_fpn_1x_coco.py det.pth backbone.onnx \\
        --shape 800 1344 --verify
    # a searched genotype; `none`: random weights (to check it exports)
    python tools/deployment/pytorch2onnx.py \\
        configs/imagenet/sase_r50_8xb16_in1k.py none searched.onnx \\
        --cfg-options \\
        model.backbone.attn_cfg.genotype=work_dirs/demo/genotype.json
"""
import argparse
import os
import os.path as osp
import sys
import warnings
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config, DictAction

# sase_mm's types and configs, and its safe checkpoint loader in mmengine.
import sase_mm  # noqa: F401
from sase_mm.apis.tool_models import (ClassifierLogits, build_config_model,
                                      is_detector)
from sase_mm.models.layers.config import exportable


class ExportError(ValueError):
    """A model this tool does not export, or an export that does not
    match PyTorch; the message says why."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a SASE classifier or a detector\'s backbone '
        '(mmengine config + checkpoint) to ONNX')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint',
                        help='checkpoint file (`none`: random weights)')
    parser.add_argument('output_file', help='the .onnx file to write')
    parser.add_argument(
        '--shape', type=int, nargs='+', default=None,
        help='input H W (default: 224 224 for classifiers, 800 1333 for '
        'detectors)')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='batch of the example input (1)')
    parser.add_argument('--opset-version', type=int, default=17,
                        help='ONNX opset (17)')
    parser.add_argument(
        '--dynamic-export', action=argparse.BooleanOptionalAction,
        default=True, help='dynamic batch, height and width axes (default '
        'on; --no-dynamic-export fixes the --shape)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='export a classifier\'s backbone (stage '
                        'features) instead of its logits')
    parser.add_argument(
        '--verify', action='store_true',
        help='compare onnxruntime with PyTorch (needs onnxruntime)')
    parser.add_argument(
        '--verify-shape', type=int, nargs=2, default=None, metavar=('H', 'W'),
        help='the second input size of --verify (default: H + 32, W + 64)')
    parser.add_argument('--rtol', type=float, default=1e-4,
                        help='--verify tolerance: max |onnx - torch| / '
                        'max |torch| per output (1e-4)')
    parser.add_argument(
        '--keep-initializers-as-inputs', action='store_true',
        help='list the weights as graph inputs too (the old mmcls export; '
        'also a way around the exporter merging equal-valued weights, '
        'e.g. zero-initialised ones of untrained models)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the random weights (checkpoint none) '
                        'and of the example inputs')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, `key=value` (e.g. '
        'model.backbone.attn_cfg.genotype=PATH)')
    return parser.parse_args(argv)


# ------------------------------------------------------------------ models
def check_exportable(model: nn.Module, config: str) -> None:
    """Refuses search supernets (their blocks mix every candidate)."""
    from sase_mm.models.layers.builder import reads_alphas
    found = [name or type(model).__name__
             for name, m in model.named_modules() if reads_alphas(m)]
    if found:
        raise ExportError(
            f'{config} builds a search supernet ({type(model).__name__}; '
            f'searchable blocks: {", ".join(found[:3])}'
            f'{", ..." if len(found) > 3 else ""}). It is for the search, '
            f'not for deployment: export the block it derived instead, e.g. '
            f'configs/imagenet/sase_r50_8xb16_in1k.py with --cfg-options '
            f'model.backbone.attn_cfg.genotype=<work_dir>/genotype.json')


def _some(keys: List[str]) -> str:
    return ', '.join(keys[:4]) + (', ...' if len(keys) > 4 else '')


def load_weights(target: nn.Module, path: str, prefix: str = '') -> None:
    """Loads the ``prefix`` part of a checkpoint into ``target``, strictly.

    Read by mmengine, so by sase_mm's safe loader: the whole checkpoint
    (``module.`` stripped) by ``load_checkpoint``, or with a prefix the keys
    under it by ``_load_checkpoint_with_prefix``.

    Raises:
        ExportError: no state_dict, no ``prefix`` keys, or keys or shapes
            that do not fit ``target``.
    """
    from mmengine.runner import load_checkpoint, load_state_dict

    # mmengine's reader of one sub-module's part of a checkpoint (mmdet's
    # backbones use it); it has no public name.
    from mmengine.runner.checkpoint import _load_checkpoint_with_prefix
    found = {}

    def record(module, incompatible):  # mmengine runs it, then raises
        found.update(missing=list(incompatible.missing_keys),
                     unexpected=list(incompatible.unexpected_keys))

    hook = target.register_load_state_dict_post_hook(record)
    try:
        if prefix:
            try:
                state = _load_checkpoint_with_prefix(prefix, path, 'cpu')
            except AssertionError:  # mmengine's way of saying "none"
                raise ExportError(
                    f'checkpoint {path!r} has no `{prefix}*` keys (is it '
                    f'a checkpoint of this config?)') from None
            load_state_dict(target, state, strict=True)
        else:
            load_checkpoint(target, path, map_location='cpu', strict=True,
                            revise_keys=[(r'^module\.', '')])
    except RuntimeError as err:
        if not found:
            if str(err).startswith('No state_dict found'):
                raise ExportError(f'checkpoint {path!r} holds no '
                                  f'state_dict') from None
            raise
        sizes = [line.strip() for line in str(err).splitlines()
                 if line.strip().startswith('size mismatch')]
        if sizes:  # shapes that differ
            raise ExportError(f'checkpoint {path!r} does not fit the '
                              f'config\'s model: {sizes[0]}') from None
        # As mmengine's strict check: BN's num_batches_tracked may lack.
        missing = [k for k in found['missing']
                   if 'num_batches_tracked' not in k]
        unexpected = found['unexpected']
        raise ExportError(
            f'checkpoint {path!r} does not fit the config\'s model'
            f'{" (" + prefix.rstrip(".") + ")" if prefix else ""}: '
            f'{len(missing)} missing key(s) [{_some(missing)}], '
            f'{len(unexpected)} unexpected [{_some(unexpected)}]') from None
    finally:
        hook.remove()


def build_export_model(cfg: Config, config: str, checkpoint: str,
                       backbone_only: bool = False, seed: int = 0):
    """(module to export, its output names, kind, the full model)."""
    model = build_config_model(cfg, seed)
    check_exportable(model, config)
    random = checkpoint.lower() == 'none'
    if is_detector(model) or backbone_only:
        if not hasattr(model, 'backbone'):
            raise ExportError(f'{config}: {type(model).__name__} has no '
                              f'backbone to export')
        target, kind = model.backbone, 'backbone'
        if not random:
            load_weights(target, checkpoint, 'backbone.')
        n_out = len(getattr(target, 'out_indices', [0]))
        names = [f'feat{i}' for i in getattr(target, 'out_indices',
                                             range(n_out))]
    elif hasattr(model, 'head') and hasattr(model, 'extract_feat'):
        if not random:
            load_weights(model, checkpoint)
        target, kind, names = ClassifierLogits(model), 'classifier', \
            ['logits']
    else:
        raise ExportError(
            f'{config}: {type(model).__name__} is neither an mmpretrain '
            f'classifier nor an mmdet detector; pytorch2onnx.py exports '
            f'those (a detector\'s backbone)')
    if random:
        warnings.warn(f'checkpoint `none`: exporting random weights (seed '
                      f'{seed})')
    return target.eval(), names, kind, model


def _preprocessing(model) -> Dict[str, str]:
    pre = getattr(model, 'data_preprocessor', None)
    out = {}
    for key in ('mean', 'std'):
        value = getattr(pre, key, None)
        if isinstance(value, torch.Tensor):
            out[key] = ' '.join(f'{v:g}' for v in value.flatten().tolist())
    conv = getattr(pre, '_channel_conversion', getattr(pre, 'to_rgb', None))
    if conv is not None:
        # The pipelines load BGR (mmcv); the preprocessor may swap to RGB.
        out['channel_order'] = 'RGB' if conv else 'BGR'
    return out


def _as_list(out) -> List[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def export(module: nn.Module, output_names: Sequence[str], path: str,
           shape: Tuple[int, int], batch_size: int = 1, opset: int = 17,
           dynamic: bool = True, keep_initializers_as_inputs: bool = False,
           metadata: Dict[str, str] = None) -> None:
    """``torch.onnx.export`` (TorchScript exporter) of ``module`` in eval
    mode, under no_grad, with sase_mm's layers exportable (their plain
    forms, see the module doc)."""
    x = torch.randn(batch_size, 3, *shape)
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        for i, name in enumerate(output_names):
            dynamic_axes[name] = {0: 'batch'} if name == 'logits' else \
                {0: 'batch', 2: f'height_{name}', 3: f'width_{name}'}
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    module.eval()
    with torch.no_grad(), exportable(), warnings.catch_warnings():
        # Shape comparisons inside the layers warn while tracing; --verify
        # checks the graph at other shapes.
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        warnings.filterwarnings('ignore', category=FutureWarning)
        torch.onnx.export(
            module, (x, ), path, dynamo=False, opset_version=opset,
            input_names=['input'], output_names=list(output_names),
            dynamic_axes=dynamic_axes, do_constant_folding=True,
            keep_initializers_as_inputs=keep_initializers_as_inputs)
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx ships with the tests' deps
        return
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)


def verify(module: nn.Module, path: str, shapes, rtol: float = 1e-4,
           seed: int = 0) -> Dict[str, float]:
    """onnxruntime against PyTorch (the layers' fast forms, not the
    exportable ones) on random inputs of ``shapes`` ((N, H, W) each).

    Returns:
        dict: ``'NxHxW'`` -> the largest relative error over the outputs
        (max |onnx - torch| / max |torch|).

    Raises:
        ExportError: an error above ``rtol``, or onnxruntime refusing the
            model or an input shape.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError('--verify needs onnxruntime: `pip install '
                          'onnxruntime` (requirements/tests.txt)') from None
    try:
        sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    except Exception as err:  # onnxruntime's own exception types
        raise ExportError(
            f'onnxruntime cannot load {path}: {str(err)[:300]} (an untrained '
            f'model\'s equal-valued weights: try '
            f'--keep-initializers-as-inputs)') from None
    gen = torch.Generator().manual_seed(seed)
    errors = {}
    for n, h, w in shapes:
        x = torch.randn(n, 3, h, w, generator=gen)
        with torch.no_grad():
            ref = [t.numpy() for t in _as_list(module(x))]
        key = f'{n}x{h}x{w}'
        try:
            got = sess.run(None, {'input': x.numpy()})
        except Exception as err:
            raise ExportError(f'onnxruntime fails at input {key}: '
                              f'{str(err)[:300]}') from None
        if len(got) != len(ref) or any(g.shape != r.shape
                                       for g, r in zip(got, ref)):
            raise ExportError(
                f'at input {key}: onnxruntime gives shapes '
                f'{[g.shape for g in got]}, PyTorch {[r.shape for r in ref]}')
        errors[key] = max(
            float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-12))
            for g, r in zip(got, ref))
        if not errors[key] <= rtol:
            raise ExportError(f'at input {key} onnxruntime differs from '
                              f'PyTorch by {errors[key]:.2e} (relative), '
                              f'more than --rtol {rtol:g}')
    return errors


def main(argv=None):
    """Exports; returns ``dict(output_file, kind, output_names, errors)``
    (``errors`` from --verify, else empty)."""
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    module, names, kind, model = build_export_model(
        cfg, args.config, args.checkpoint, args.backbone_only, args.seed)
    shape = args.shape or ([800, 1333] if is_detector(model) else
                           [224, 224])
    if len(shape) == 1:
        shape = [shape[0], shape[0]]
    if len(shape) != 2:
        raise ExportError(f'--shape takes H W, got {shape}')
    h, w = shape
    meta = dict(sase_mm_config=osp.basename(args.config), kind=kind,
                **_preprocessing(model))
    torch.manual_seed(args.seed)
    export(module, names, args.output_file, (h, w), args.batch_size,
           args.opset_version, args.dynamic_export,
           args.keep_initializers_as_inputs, meta)
    dynamic = ', dynamic batch / height / width' if args.dynamic_export \
        else ''
    print(f'{kind} of {args.config} -> {args.output_file} (opset '
          f'{args.opset_version}, input 1x3x{h}x{w}{dynamic}; outputs '
          f'{", ".join(names)})')
    pre = _preprocessing(model)
    if pre:
        print('input: (N, 3, H, W) float, ' + ', '.join(
            f'{k.replace("_", " ")} {v}' for k, v in pre.items()) +
            ' (the data preprocessor, not in the graph; also in the model\'s '
            'metadata)')
    errors = {}
    if args.verify:
        shapes = [(args.batch_size, h, w)]
        if args.dynamic_export:
            vh, vw = args.verify_shape or (h + 32, w + 64)
            shapes.append((args.batch_size + 1, vh, vw))
        errors = verify(module, args.output_file, shapes, args.rtol,
                        args.seed)
        print('onnxruntime vs PyTorch, max relative error: ' + ', '.join(
            f'{k}: {v:.2e}' for k, v in errors.items()))
    return dict(output_file=args.output_file, kind=kind, output_names=names,
                errors=errors)


if __name__ == '__main__':
    try:
        main()
    except ExportError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(1)
