"""Command-line pieces shared by ``tools/train.py``, ``test.py`` and
``search.py`` (the shape of mmdetection's / mmpretrain's tools).

SASE (arXiv 2411.08333) is trained, searched and evaluated through mmengine
Runners; the three tools differ only in their own options, so the common
ones (``--work-dir``, ``--cfg-options``, ``--launcher``, ``--resume``,
``--amp``, ``--no-validate``) and the config they produce live here once.
"""
import argparse
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .unwrap import unwrap_model


def add_common_args(parser: argparse.ArgumentParser, work_dir_help: str,
                    cfg_example: str) -> None:
    """--work-dir, --cfg-options, --launcher, --local-rank."""
    parser.add_argument('--work-dir', help=work_dir_help)
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help=f'override config settings, `key=value` (e.g. {cfg_example})')
    parser.add_argument('--launcher',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def add_training_args(parser: argparse.ArgumentParser, amp_help: str,
                      validate_help: str) -> None:
    """--resume [PATH], --amp, --no-validate."""
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint; without a path, from the latest '
        'checkpoint in the work dir (if any)')
    parser.add_argument('--amp', action='store_true', help=amp_help)
    parser.add_argument('--no-validate', action='store_true',
                        help=validate_help)


def parse(parser: argparse.ArgumentParser,
          argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parses and exports LOCAL_RANK for launchers that pass --local-rank."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_config(args: argparse.Namespace) -> Config:
    """The config with --launcher, --cfg-options and --work-dir applied
    (default work dir: ``./work_dirs/<config name>``)."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def apply_training_args(cfg: Config, args: argparse.Namespace) -> Config:
    """--no-validate and --resume (``auto``: the work dir's latest)."""
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


def build_runner(cfg: Config) -> Runner:
    """``Runner.from_cfg``, or the config's own ``runner_type``."""
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else \
        RUNNERS.build(cfg)


def run_main(main, argv=None):
    """Runs a tool's ``main``; a refused or unreadable file (a crafted
    checkpoint, say) ends it with its message and exit status 1 instead of
    a traceback: the message says all there is to say."""
    import sys

    from ..datasets.cifar10 import CIFARFormatError
    from .safe_checkpoint import CheckpointReadError, UntrustedCheckpointError
    try:
        return main(argv)
    except (UntrustedCheckpointError, CheckpointReadError,
            CIFARFormatError) as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(1)


unwrap = unwrap_model  # the tools' name for it
