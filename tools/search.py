"""Run a SASE architecture search (DARTS) from an mmengine config.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333), SASE-SPEC section 3. The same shape as mmpretrain's
``tools/train.py``; the search writes its genotype (``genotype.json``,
``genotype.py`` for a downstream ``_base_``) and pictures of alpha to the
work dir, and prints the genotype and the held-out accuracy at the end.

Usage::

    python tools/search.py configs/search/sase_r20_cifar10.py
    python tools/search.py configs/search/sase_r20_digits.py \
        --work-dir work_dirs/demo
    python tools/search.py CONFIG --resume            # latest in work dir
    bash tools/dist_search.sh CONFIG 8 [--amp]
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Search a SASE block (DARTS) with an mmengine config')
    parser.add_argument('config', help='search config file path')
    parser.add_argument('--work-dir', help='the dir to save logs, '
                        'checkpoints and the genotype')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint; without a path, from the latest '
        'checkpoint in the work dir (if any)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision for the weight step (CUDA)')
    parser.add_argument('--no-validate', action='store_true',
                        help='skip validation on the held-out split')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, `key=value` (e.g. '
        'train_cfg.max_epochs=10 model.order=1)')
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
        # The weight step is an ordinary loss-scaled backward; the alpha
        # gradients come from torch.autograd.grad and are not scaled.
        cfg.optim_wrapper.weights.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.weights.loss_scale = 'dynamic'
    if args.launcher != 'none' and not torch.cuda.is_available():
        # Several CPU processes: gloo, and DDP without device ids (the
        # search model averages its own gradients across ranks).
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
        cfg.env_cfg.dist_cfg.backend = 'gloo'
        cfg.setdefault('model_wrapper_cfg', dict(
            type='MMDistributedDataParallel', device_ids=None,
            broadcast_buffers=False))
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume: checkpoint {args.resume!r} '
                                    f'does not exist')
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def summary(runner) -> str:
    """The final genotype, held-out accuracy and files, as text."""
    from sase_mm.engine import GenotypeHook
    from sase_mm.models.attention import Genotype
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    genotype = Genotype.from_alphas(model.alphas)
    lines = [f'Searched genotype: {genotype}',
             f'  as a list: {list(genotype)}']
    scalars = runner.message_hub.log_scalars
    for key in sorted(scalars):
        if key.startswith('val/accuracy'):
            lines.append(f'Held-out {key[4:]}: '
                         f'{scalars[key].current():.2f}%')
    for hook in runner.hooks:
        if isinstance(hook, GenotypeHook):
            lines += [f'  {k}: {v}' for k, v in hook.paths(runner).items()
                      if osp.exists(v)]
    return '\n'.join(lines)


def main(argv=None):
    """Searches; returns the Runner (after the search) for scripting."""
    import sase_mm  # noqa: F401  registers sase_mm's types and configs
    args = parse_args(argv)
    cfg = build_config(args)
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    runner.train()
    if runner.rank == 0:
        print(summary(runner), flush=True)
    return runner


if __name__ == '__main__':
    # Run as a script, the tools directory (not the repository) is on the
    # path; make the checkout importable when sase_mm is not installed.
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    main()
