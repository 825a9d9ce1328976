"""Run a SASE architecture search (DARTS) from an mmengine config.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333), docs/spec.md section 3. The same shape as mmpretrain's
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
import os.path as osp
import sys

# Run as a script, the tools directory (not the repository) is on the path;
# make the checkout importable when sase_mm is not installed.
sys.path.insert(1, osp.dirname(osp.dirname(osp.abspath(__file__))))

import sase_mm  # noqa: E402,F401  sase_mm's types and configs, before parsing
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from sase_mm.utils import tool_args  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Search a SASE block (DARTS) with an mmengine config')
    parser.add_argument('config', help='search config file path')
    tool_args.add_common_args(
        parser, 'the dir to save logs, checkpoints and the genotype',
        'train_cfg.max_epochs=10 model.order=1')
    tool_args.add_training_args(
        parser, 'mixed precision for the weight step (CUDA)',
        'skip validation on the held-out split')
    return tool_args.parse(parser, argv)


def build_config(args) -> Config:
    """The config after the command-line overrides."""
    cfg = tool_args.load_config(args)
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
    return tool_args.apply_training_args(cfg, args)


def summary(runner) -> str:
    """The final genotype and held-out accuracy, as text (GenotypeHook has
    just logged the genotype's files)."""
    from sase_mm.models.sase import Genotype
    genotype = Genotype.from_alphas(tool_args.unwrap(runner.model).alphas)
    lines = [f'Searched genotype: {genotype}',
             f'  as a list: {list(genotype)}']
    scalars = runner.message_hub.log_scalars
    for key in sorted(scalars):
        if key.startswith('val/accuracy'):
            lines.append(f'Held-out {key[4:]}: '
                         f'{scalars[key].current():.2f}%')
    return '\n'.join(lines)


def main(argv=None):
    """Searches; returns the Runner (after the search) for scripting."""
    args = parse_args(argv)
    cfg = build_config(args)
    runner = tool_args.build_runner(cfg)
    runner.train()
    if runner.rank == 0:
        print(summary(runner), flush=True)
    return runner


if __name__ == '__main__':
    tool_args.run_main(main)
