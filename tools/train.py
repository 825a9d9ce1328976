"""Train a detector or classifier from an mmengine config (sase_mm).

The mmdetection / mmpretrain ``tools/train.py``, with sase_mm imported (so
``type='sase_mm.X'`` and ``_base_ = 'sase_mm::...'`` resolve) and checks
that stop early, with a message, when the dataset files or the pretrained
backbone (SASE, arXiv 2411.08333: detectors start from the ImageNet-trained
SASE ResNet) are missing or do not fit.

Usage::

    python tools/train.py configs/faster_rcnn/sase_r50_fpn_1x_coco.py
    bash tools/dist_train.sh CONFIG 8 [--auto-scale-lr] [--amp]
"""
import argparse
import os.path as osp

from mmengine.config import Config

import sase_mm  # noqa: F401  sase_mm's types and configs, before parsing
from sase_mm.apis import tool_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a model (mmdet / mmpretrain config) with sase_mm')
    parser.add_argument('config', help='train config file path')
    tool_args.add_common_args(
        parser, 'the dir to save logs and models',
        'model.backbone.init_cfg.checkpoint=PATH')
    tool_args.add_training_args(parser, 'automatic mixed-precision training',
                                'skip validation during training')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the lr linearly by total batch / '
        'auto_scale_lr.base_batch_size')
    return tool_args.parse(parser, argv)


def build_config(args) -> Config:
    """The config after the command-line overrides."""
    cfg = tool_args.load_config(args)
    if args.amp:
        tool_args.amp_wrapper(cfg.optim_wrapper, args)
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError(
                f'--auto-scale-lr needs `auto_scale_lr = dict(enable=False, '
                f'base_batch_size=N)` in {args.config} (N: the total batch '
                f'size the lr is set for)')
        cfg.auto_scale_lr.enable = True
    return tool_args.apply_training_args(cfg, args)


def main(argv=None):
    """Trains; returns the Runner (after training) for scripting."""
    from sase_mm.apis.preflight import (check_data_paths,
                                        check_pretrained_exists,
                                        check_pretrained_matches,
                                        pretrained_init_cfg)
    from sase_mm.utils.unwrap import unwrap_model
    args = parse_args(argv)
    cfg = build_config(args)

    loaders = ['train_dataloader']
    if cfg.get('val_cfg') is not None:
        loaders.append('val_dataloader')
    check_data_paths(cfg, loaders)
    check_pretrained_exists(cfg)

    runner = tool_args.build_runner(cfg)

    init_cfg = pretrained_init_cfg(cfg.model)
    if init_cfg is not None and osp.isfile(str(init_cfg['checkpoint'])):
        check_pretrained_matches(unwrap_model(runner.model).backbone,
                                 init_cfg)

    runner.train()
    return runner


if __name__ == '__main__':
    tool_args.run_main(main)
