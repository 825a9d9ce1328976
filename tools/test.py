"""Evaluate a checkpoint on a config's test set (sase_mm).

The mmdetection / mmpretrain ``tools/test.py``, with sase_mm imported (so
``type='sase_mm.X'`` and ``_base_ = 'sase_mm::...'`` resolve, and mmengine
checkpoints load under torch's safe ``weights_only=True`` loader) and a
check that the dataset files are where the config says. For the SASE models
(arXiv 2411.08333): COCO bbox / segm AP, ImageNet top-1 / top-5.

Usage::

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl]
    bash tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse
import os.path as osp

from mmengine.config import Config

import sase_mm  # noqa: F401  sase_mm's types and configs, before parsing
from sase_mm.apis import tool_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (evaluate) a checkpoint with sase_mm')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    tool_args.add_common_args(
        parser, 'the dir to save the log and metrics (default: '
        './work_dirs/<config name>)', 'test_dataloader.batch_size=4')
    parser.add_argument(
        '--out', help='dump the raw predictions to this pickle file')
    return tool_args.parse(parser, argv)


def build_config(args) -> Config:
    """The config after the command-line overrides."""
    cfg = tool_args.load_config(args)
    cfg.load_from = args.checkpoint
    return cfg


def _dump_metric(cfg, out_file: str):
    """The metric that pickles the raw predictions (mmdet's encodes masks
    to RLE first)."""
    if not out_file.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl or .pickle file, got '
                         f'{out_file!r}')
    if cfg.get('default_scope') == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        return DumpDetResults(out_file_path=out_file)
    from mmengine.evaluator import DumpResults
    return DumpResults(out_file_path=out_file)


def main(argv=None):
    """Evaluates; returns the metrics dict (e.g. ``coco/bbox_mAP``)."""
    from sase_mm.apis.preflight import (check_data_paths,
                                        check_pretrained_matches)
    from sase_mm.utils.unwrap import unwrap_model
    args = parse_args(argv)
    cfg = build_config(args)
    local = '://' not in args.checkpoint
    if local and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} does not '
                                f'exist')
    dump = _dump_metric(cfg, args.out) if args.out else None
    check_data_paths(cfg, ['test_dataloader'])

    runner = tool_args.build_runner(cfg)
    if local:
        # mmengine loads non-strictly (a warning); a checkpoint of another
        # model would give meaningless numbers, so stop instead.
        check_pretrained_matches(unwrap_model(runner.model),
                                 dict(checkpoint=args.checkpoint),
                                 ignore_unexpected=(),
                                 what='the CHECKPOINT argument')
    if dump is not None:
        runner.test_evaluator.metrics.append(dump)
    return runner.test()


if __name__ == '__main__':
    tool_args.run_main(main)
