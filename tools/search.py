"""Run a SASE architecture search (DARTS) from an mmengine config.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333), docs/spec.md section 3. The same shape as mmpretrain's
``tools/train.py``; the search writes its genotype (``genotype.json``,
``genotype.py`` for a downstream ``_base_``) and pictures of alpha to the
work dir, and prints the genotype and the held-out accuracy at the end.

Usage::

    python tools/search.py configs/search/sase_r20_cifar10.py
    python tools/search.py configs/search/sase_r8_digits.py \
        --work-dir work_dirs/demo
    python tools/search.py CONFIG --resume            # latest in work dir
    bash tools/dist_search.sh CONFIG 8 [--amp]
"""
import argparse

from mmengine.config import Config

import sase_mm  # noqa: F401  sase_mm's types and configs, before parsing
from sase_mm.apis import tool_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Search a SASE block (DARTS) with an mmengine config')
    parser.add_argument('config', help='search config file path')
    tool_args.add_common_args(
        parser, 'the dir to save logs, checkpoints and the genotype',
        'train_cfg.max_epochs=10 model.order=1')
    tool_args.add_training_args(
        parser, 'mixed precision for the weight step (AmpOptimWrapper on '
        'CUDA, bfloat16 CPUAmpOptimWrapper on CPU)',
        'skip validation on the held-out split')
    return tool_args.parse(parser, argv)


def build_config(args) -> Config:
    """The config after the command-line overrides."""
    cfg = tool_args.load_config(args)
    if args.amp:
        # The weight step is an ordinary loss-scaled backward; the alpha
        # gradients come from torch.autograd.grad and are not scaled.
        # (The finite differences of order 2 run in float32: architect.py.)
        tool_args.amp_wrapper(cfg.optim_wrapper.weights, args)
    return tool_args.apply_training_args(cfg, args)


def precheck(cfg: Config) -> None:
    """Before anything is built (and no work dir is made): the three
    dataloaders' data (a missing set stops with its layout and the exact
    keys to set), the genotype files the config names and the costs file
    of a cost-aware search."""
    from sase_mm.apis.preflight import (check_cost_file, check_data_paths,
                                        check_genotype_files)
    loaders = ['train_dataloader', 'train_cfg.search_dataloader']
    if cfg.get('val_cfg') is not None:  # dict() validates too
        loaders.append('val_dataloader')
    check_data_paths(cfg, loaders)
    check_genotype_files(cfg)
    check_cost_file(cfg)


def summary(runner) -> str:
    """The final genotype and held-out accuracy, as text (GenotypeHook has
    just logged the genotype's files)."""
    from sase_mm.utils.unwrap import unwrap_model
    from sase_mm.engine import GenotypeHook
    from sase_mm.visualization.alpha_plots import decision_summary
    genotype = unwrap_model(runner.model).genotype()
    lines = [f'Searched genotype: {genotype}',
             f'  as a list: {list(genotype)}']
    for hook in runner.hooks:
        if isinstance(hook, GenotypeHook):
            lines.append(decision_summary(hook.undecided(runner),
                                          hook.margin_threshold))
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
    precheck(cfg)
    runner = tool_args.build_runner(cfg)
    runner.train()
    if runner.rank == 0:
        print(summary(runner), flush=True)
    return runner


if __name__ == '__main__':
    tool_args.run_main(main)
