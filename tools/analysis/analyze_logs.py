"""Curves and iteration times from mmengine's scalar logs (sase_mm).

mmdetection's / mmpretrain's ``tools/analysis_tools/analyze_logs.py`` for the
SASE search and trainings (arXiv 2411.08333), on mmengine's own logs: the
``<work_dir>/<timestamp>/vis_data/scalars.json`` that ``LocalVisBackend``
writes (one JSON object per line). A work dir also works: its newest run's
scalars.json is read.

* ``plot_curve``: the chosen keys against the epoch (training values at
  fractional epochs; the iteration for iteration-based runs), keys
  containing ``loss`` in one panel and every other key in its own, one
  curve per log and key (``sase_mm.visualization.curves.plot_curves``). The
  search logs ``loss`` (weight step), ``loss_search`` (alpha step),
  ``accuracy/top1`` (held-out) and ``alpha/<edge>/<op>`` (softmax(alpha));
  detectors ``coco/bbox_mAP``, classifiers ``accuracy/top1``.
* ``cal_train_time``: the mean time per training iteration, per epoch and
  overall (the first iteration of each epoch left out unless
  ``--include-outliers``).

Usage::

    python tools/analysis/analyze_logs.py plot_curve \\
        work_dirs/demo/20240101_120000/vis_data/scalars.json \\
        --keys loss loss_search accuracy/top1 --out curves.png
    python tools/analysis/analyze_logs.py plot_curve RUN1 RUN2 \\
        --keys loss --legend baseline sase --out loss.png
    python tools/analysis/analyze_logs.py cal_train_time work_dirs/demo
"""
import argparse
import re
import sys

import numpy as np

from sase_mm.visualization.curves import plot_curves
from sase_mm.visualization.scalars import (find_scalars, iter_times,
                                           load_scalars)


def add_plot_parser(subparsers):
    parser = subparsers.add_parser(
        'plot_curve', help='plot keys of scalar logs against epoch / iter')
    parser.add_argument('json_logs', nargs='+',
                        help='scalars.json files (or work dirs)')
    parser.add_argument('--keys', nargs='+', default=['loss'],
                        help='the values to plot (default: loss)')
    parser.add_argument('--title', help='title of the figure')
    parser.add_argument('--legend', nargs='+', default=None,
                        help='one label per log and key, in that order')
    parser.add_argument('--out', default='curves.png',
                        help='the PNG to write (default: curves.png)')
    parser.add_argument('--window-size', default='12*5',
                        help='figure size in inches, "W*H" (12*5)')


def add_time_parser(subparsers):
    parser = subparsers.add_parser(
        'cal_train_time', help='mean time per training iteration')
    parser.add_argument('json_logs', nargs='+',
                        help='scalars.json files (or work dirs)')
    parser.add_argument(
        '--include-outliers', action='store_true',
        help='include the first iteration of every epoch in the means')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Analyze mmengine scalar logs (scalars.json)')
    sub = parser.add_subparsers(dest='task', required=True,
                                help='plot_curve or cal_train_time')
    add_plot_parser(sub)
    add_time_parser(sub)
    args = parser.parse_args(argv)
    if args.task == 'plot_curve' and not re.fullmatch(r'\d+(\.\d+)?\*\d+'
                                                      r'(\.\d+)?',
                                                      args.window_size):
        parser.error(f'--window-size must be "W*H", got '
                     f'{args.window_size!r}')
    return args


def cal_train_time(paths, include_outliers=False) -> dict:
    """Prints and returns {log: mean seconds per iteration}."""
    out = {}
    for path in paths:
        print(f'{"-" * 5} train time of {path} {"-" * 5}')
        groups = iter_times(load_scalars(path))
        if not groups:
            raise ValueError(f'{path}: no training line with `time`')
        means = [(e, t if include_outliers or len(t) < 2 else t[1:])
                 for e, t in groups]
        per_epoch = np.array([t.mean() for _, t in means])
        if len(groups) > 1:
            slow, fast = per_epoch.argmax(), per_epoch.argmin()
            print(f'slowest epoch {means[slow][0]}, average time is '
                  f'{per_epoch[slow]:.4f} s/iter')
            print(f'fastest epoch {means[fast][0]}, average time is '
                  f'{per_epoch[fast]:.4f} s/iter')
            print(f'time std over epochs is {per_epoch.std():.4f}')
        avg = float(np.concatenate([t for _, t in means]).mean())
        print(f'average iter time: {avg:.4f} s/iter')
        out[path] = avg
    return out


def main(argv=None):
    """Runs the task; returns plot_curves' dict or the mean times."""
    args = parse_args(argv)
    paths = [find_scalars(p) for p in args.json_logs]
    if args.task == 'cal_train_time':
        return cal_train_time(paths, args.include_outliers)
    w, h = (float(v) for v in args.window_size.split('*'))
    drawn = plot_curves(paths, args.keys, args.out, title=args.title,
                        legend=args.legend, figsize=(w, h))
    print(f'curves of {", ".join(args.keys)} -> {args.out}')
    return drawn


if __name__ == '__main__':
    try:
        main()
    except (KeyError, ValueError, FileNotFoundError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f'error: {msg}', file=sys.stderr)
        sys.exit(1)
