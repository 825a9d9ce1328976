"""Command-line pieces shared by ``tools/train.py``, ``test.py`` and
``search.py`` (the shape of mmdetection's / mmpretrain's tools).

SASE (arXiv 2411.08333) is trained, searched and evaluated through mmengine
Runners; the three tools differ only in their own options, so the common
ones (``--work-dir``, ``--cfg-options``, ``--launcher``, ``--resume``,
``--amp``, ``--no-validate``), the config they produce and the way a tool
ends on a refused file live here once. ``--resume`` follows the policy of
``apis/resume.py``; genotype files are found by the walker of
``apis/preflight.py``.
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .preflight import genotype_files


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
    parser.add_argument(
        '--amp-dtype', choices=('float16', 'bfloat16'), default=None,
        help='autocast dtype with --amp (default: float16 on CUDA, '
        'bfloat16 on CPU)')
    parser.add_argument('--no-validate', action='store_true',
                        help=validate_help)


def amp_wrapper(wrapper_cfg, args: argparse.Namespace) -> None:
    """Turns an optim wrapper config into its mixed-precision form, in
    place (--amp): mmengine's ``AmpOptimWrapper`` (dynamic loss scale) on
    CUDA; without a GPU, where that refuses to build,
    ``CPUAmpOptimWrapper`` (``sase_mm.engine``; bfloat16, no scaling).
    ``--amp-dtype`` sets the autocast dtype."""
    import torch
    if torch.cuda.is_available():
        wrapper_cfg.type = 'AmpOptimWrapper'
        wrapper_cfg.loss_scale = 'dynamic'
        if args.amp_dtype is not None:
            wrapper_cfg.dtype = args.amp_dtype
    else:
        import sase_mm.engine  # noqa: F401  (registers the CPU wrapper)
        wrapper_cfg.type = 'CPUAmpOptimWrapper'
        wrapper_cfg.dtype = args.amp_dtype or 'bfloat16'


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
    _use_safe_checkpoint_hook(cfg)
    inline_genotype_files(cfg)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def inline_genotype_files(cfg) -> None:
    """Replaces every ``genotype=PATH`` in the config by the operations the
    file holds (read, never executed), so that the config a run dumps into
    its work dir records the block itself and reruns without the file.
    A path that names no file stays, for the pre-check
    (``preflight.check_genotype_files``) to report."""
    from ..models.sase.genotype import Genotype
    for _, parent in genotype_files(cfg):
        if osp.isfile(parent['genotype']):
            parent['genotype'] = list(Genotype.load(parent['genotype']))


def _use_safe_checkpoint_hook(cfg: Config) -> None:
    """mmengine's CheckpointHook writes in place and deletes the previous
    checkpoint first; every checkpoint the tools write goes through
    ``sase_mm.SafeCheckpointHook`` instead (same options), unless it is
    written to remote storage or the config names mmengine's hook with its
    scope (``type='mmengine.CheckpointHook'``: an explicit choice)."""
    hook = cfg.get('default_hooks', {}).get('checkpoint')
    if isinstance(hook, dict) and hook.get('type') == 'CheckpointHook' and \
            '://' not in str(hook.get('out_dir', '')):
        hook['type'] = 'sase_mm.SafeCheckpointHook'


def apply_training_args(cfg: Config, args: argparse.Namespace) -> Config:
    """--no-validate and --resume.

    A bare ``--resume`` takes the newest checkpoint of the work dir that
    reads and matches its SHA-256, warning about each newer one it skips
    (truncated, hash mismatch); ``--resume PATH`` stops with an error naming
    the file and the good checkpoints beside it when PATH is damaged.
    """
    from .resume import check_readable, checkpoints_in, resumable
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.resume == 'auto':
        path, skipped = resumable(cfg.work_dir) if osp.isdir(
            cfg.work_dir) else (None, [])
        # Before the runner exists there is no run logger: stderr.
        for bad in skipped:
            print(f'warning: --resume: skipping {bad.path} ({bad.why})',
                  file=sys.stderr)
        if skipped and path is not None:
            print(f'warning: --resume: resuming from {path}, the newest '
                  f'checkpoint that reads', file=sys.stderr)
        cfg.resume = True
        cfg.load_from = path
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume: checkpoint {args.resume!r} '
                                    f'does not exist')
        why = check_readable(args.resume, raise_untrusted=True)
        if why:
            from ..utils.safe_checkpoint import CheckpointReadError
            here = osp.dirname(osp.abspath(args.resume))
            good = [p for p in checkpoints_in(here)
                    if osp.abspath(p) != osp.abspath(args.resume)
                    and not check_readable(p)]
            beside = (f'good checkpoints beside it: {", ".join(good)}'
                      if good else 'no checkpoint beside it reads either')
            raise CheckpointReadError(
                f'--resume: checkpoint {args.resume!r} cannot be resumed '
                f'from ({why}); {beside}. Pass that path, or a bare '
                f'--resume to take the newest good one.')
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def setup_cpu_distributed(cfg: Config) -> None:
    """Several processes on a machine without CUDA (``--launcher pytorch``
    under torchrun, e.g. ``tools/dist_search.sh CONFIG 2``).

    mmengine's ``init_dist`` always calls ``torch.cuda.set_device``; so the
    gloo process group is initialised here first (from torchrun's
    environment), and mmengine, finding it initialised, uses it. Models are
    wrapped in DDP without device ids. Nothing happens with one process or
    when CUDA is there.
    """
    import torch
    import torch.distributed as dist
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel',
                                     device_ids=None,
                                     broadcast_buffers=False)
    if not dist.is_initialized():
        dist.init_process_group('gloo')


def build_runner(cfg: Config) -> Runner:
    """``Runner.from_cfg``, or the config's own ``runner_type`` (after
    :func:`setup_cpu_distributed`)."""
    setup_cpu_distributed(cfg)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else \
        RUNNERS.build(cfg)


def run_main(main, argv=None):
    """Runs a tool's ``main``; a refused or unreadable file (a crafted
    checkpoint, say) or missing data ends it with its message and exit
    status 1 instead of a traceback: the message says all there is to say."""
    from ..datasets.cifar10 import CIFARFormatError
    from ..models.sase.genotype import GenotypeFileError
    from ..models.search.cost import CostFileError
    from ..utils.checkpoint_files import CheckpointIntegrityError
    from ..utils.safe_checkpoint import (CheckpointReadError,
                                         UntrustedCheckpointError)
    from .preflight import MissingDataError
    try:
        return main(argv)
    except (UntrustedCheckpointError, CheckpointReadError,
            CheckpointIntegrityError, CIFARFormatError, CostFileError,
            GenotypeFileError, MissingDataError) as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(1)


def load_tool(rel_path: str):
    """Imports ``tools/<rel_path>.py`` as a module (tools is no package),
    once: from the checkout, or from an installed package's ``.mim/tools``.

    Args:
        rel_path: e.g. ``'train'`` or ``'analysis/complexity'``.
    """
    import importlib.util

    from ..utils.mim import package_dir
    path = osp.realpath(osp.join(package_dir(), '.mim', 'tools',
                                 rel_path + '.py'))
    name = 'sase_tools_' + rel_path.replace('/', '_')
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
