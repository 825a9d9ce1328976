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
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a model (mmdet / mmpretrain config) with sase_mm')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint; without a path, from the latest '
        'checkpoint in the work dir (if any)')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed-precision training')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the lr linearly by total batch / '
        'auto_scale_lr.base_batch_size')
    parser.add_argument('--no-validate', action='store_true',
                        help='skip validation during training')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, `key=value` (e.g. '
        'model.backbone.init_cfg.checkpoint=PATH)')
    parser.add_argument('--launcher',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args) -> Config:
    """The config after the command-line overrides."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError(
                f'--auto-scale-lr needs `auto_scale_lr = dict(enable=False, '
                f'base_batch_size=N)` in {args.config} (N: the total batch '
                f'size the lr is set for)')
        cfg.auto_scale_lr.enable = True
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None):
    """Trains; returns the Runner (after training) for scripting."""
    import sase_mm  # noqa: F401  registers sase_mm's types and configs
    from sase_mm.utils.preflight import (check_data_paths,
                                         check_pretrained_exists,
                                         check_pretrained_matches,
                                         pretrained_init_cfg)
    args = parse_args(argv)
    cfg = build_config(args)

    loaders = ['train_dataloader'] + (['val_dataloader']
                                      if cfg.get('val_cfg') else [])
    check_data_paths(cfg, loaders)
    check_pretrained_exists(cfg)

    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)

    init_cfg = pretrained_init_cfg(cfg.model)
    if init_cfg is not None and osp.isfile(str(init_cfg['checkpoint'])):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        check_pretrained_matches(model.backbone, init_cfg)

    runner.train()
    return runner


if __name__ == '__main__':
    # Run as a script, the tools directory (not the repository) is on the
    # path; let a source checkout work without an install.
    sys.path.insert(1, osp.dirname(osp.dirname(osp.abspath(__file__))))
    main()
