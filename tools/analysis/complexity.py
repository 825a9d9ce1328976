"""Parameters and FLOPs of the model a config builds (sase_mm).

For checking the SASE models (arXiv 2411.08333) against the paper's
parameter counts (docs/spec.md section 6). Counts with mmengine's
``get_model_complexity_info`` (FLOPs: multiply-adds traced at one input
size; ops without a counter, e.g. mmcv's RoIAlign and NMS, count 0) and
splits the parameters into backbone and attention blocks.

Usage::

    python tools/analysis/complexity.py configs/imagenet/sase_r50_8xb16_in1k.py
    python tools/analysis/complexity.py \\
        configs/faster_rcnn/sase_r50_fpn_1x_coco.py --shape 800 1333
    # the same model without attention:
    python tools/analysis/complexity.py CONFIG \\
        --cfg-options model.backbone.attn_cfg=None
"""
import argparse
import json
from functools import partial

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

from sase_mm.apis.tool_models import is_detector


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Print the parameters and FLOPs of a config\'s model')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape', type=int, nargs='+', default=None,
        help='input H W (default: 224 224 for classifiers, 800 1333 for '
        'detectors)')
    parser.add_argument('--no-flops', action='store_true',
                        help='count parameters only (fast)')
    parser.add_argument('--json', action='store_true',
                        help='print one JSON line instead of text')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, `key=value`')
    return parser.parse_args(argv)


def _detector_forward(model, h: int, w: int):
    """``model.forward`` for tracing with one image of (h, w): mmdet's
    tensor mode needs data samples carrying the image geometry."""
    from mmdet.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
        batch_input_shape=(h, w), scale_factor=(1.0, 1.0)))
    return partial(model._forward, batch_data_samples=[sample])


def _mixed(model):
    """A search model's blocks mix with softmax(alpha), bound as a constant
    (the tracer cannot hold a tensor that requires grad); a no-op for other
    models."""
    from contextlib import nullcontext

    from sase_mm.models.sase.mixing import mixing
    alphas = getattr(model, 'alphas', None)
    if not isinstance(alphas, torch.Tensor):
        return nullcontext()
    return mixing(alphas, alphas.detach().softmax(dim=-1))


def count(cfg: Config, shape=None, flops: bool = True) -> dict:
    """Builds the config's model and counts it.

    Returns:
        dict: ``params``, ``trainable_params`` (``requires_grad``),
        ``backbone_params``, ``attention_params`` (ints),
        ``shape`` (H, W) and ``flops`` (int, or None when not counted).
    """
    from mmengine.analysis import get_model_complexity_info
    from mmengine.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    model.eval()
    # A search model (DARTSSearch) around a detector: trace the detector,
    # whose blocks then mix with softmax(alpha).
    traced = getattr(model, 'supernet', model)
    detector = is_detector(traced)
    if not detector:
        traced = model
    if shape is None:
        shape = (800, 1333) if detector else (224, 224)
    if len(shape) == 1:
        shape = (shape[0], shape[0])
    h, w = shape
    params = sum(p.numel() for p in model.parameters())
    # Frozen parameters (frozen_stages) are what mmcv's older counter, and
    # so many published tables, leave out.
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    backbone = getattr(traced, 'backbone', traced)
    backbone_params = sum(p.numel() for p in backbone.parameters())
    attention_params = sum(p.numel() for n, p in backbone.named_parameters()
                           if '.attention.' in f'.{n}')
    out = dict(params=params, trainable_params=trainable,
               backbone_params=backbone_params,
               attention_params=attention_params, shape=(h, w), flops=None)
    if flops:
        inputs = torch.randn(1, 3, h, w)
        if detector:
            traced.forward = _detector_forward(traced, h, w)
        with torch.no_grad(), _mixed(model):
            info = get_model_complexity_info(
                traced, inputs=(inputs, ), show_table=False, show_arch=False)
        out['flops'] = int(info['flops'])
    return out


def main(argv=None):
    import sase_mm  # noqa: F401  registers sase_mm's types and configs
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    result = count(cfg, args.shape, flops=not args.no_flops)
    if args.json:
        print(json.dumps(dict(config=args.config, **result)))
        return result
    h, w = result['shape']
    print(f'config: {args.config}')
    print(f'params: {result["params"] / 1e6:.2f} M  (backbone '
          f'{result["backbone_params"] / 1e6:.2f} M, of which attention '
          f'{result["attention_params"] / 1e6:.2f} M; trainable '
          f'{result["trainable_params"] / 1e6:.2f} M)')
    if result['flops'] is not None:
        print(f'flops:  {result["flops"] / 1e9:.2f} G  (multiply-adds, input '
              f'1x3x{h}x{w})')
    return result


if __name__ == '__main__':
    main()
