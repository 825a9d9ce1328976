"""mmengine's scalar logs of a SASE search or training, as series.

A SASE search (arXiv 2411.08333, docs/spec.md section 3) and the downstream
trainings log through mmengine's ``LocalVisBackend``: one JSON object per
line in ``<work_dir>/<timestamp>/vis_data/scalars.json``. Training lines
carry ``epoch``, ``iter`` (global) and ``step`` besides the values
(``loss``, the search's ``loss_search``, learning rates, ``time``, ...);
validation lines (``accuracy/top1``, COCO's ``coco/bbox_mAP``, ...) and the
search's ``alpha/...`` lines carry only ``step``, the epoch in epoch-based
runs. This module finds and reads such a log and turns a key into
``(x, y)`` against the epoch (training values at fractional epochs) or, for
iteration-based runs, the iteration; :func:`iter_times` gives the training
iterations' times per epoch. The curves (``curves.py``) and
``tools/analysis/analyze_logs.py`` read logs through it.
"""
import glob
import json
import os.path as osp
from typing import Dict, List, Tuple

import numpy as np

_NOT_VALUES = ('epoch', 'iter', 'step')

Series = Tuple[np.ndarray, np.ndarray]


def find_scalars(path: str) -> str:
    """``path`` itself if it is a file, else the newest
    ``<path>/<timestamp>/vis_data/scalars.json`` of a work dir.

    Raises:
        FileNotFoundError: neither.
    """
    if osp.isfile(path):
        return path
    found = sorted(glob.glob(osp.join(path, '*', 'vis_data',
                                      'scalars.json')))
    if osp.isdir(path) and found:
        return found[-1]
    raise FileNotFoundError(
        f'{path!r} is neither a scalars.json nor a work dir holding '
        f'<timestamp>/vis_data/scalars.json (mmengine\'s LocalVisBackend '
        f'writes it)')


def scalars_path(runner) -> str:
    """The scalars.json a runner's LocalVisBackend writes."""
    return osp.join(runner.log_dir, 'vis_data', 'scalars.json')


def load_scalars(path: str) -> List[dict]:
    """The JSON lines of a scalars.json (blank lines skipped)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _is_train(line: dict) -> bool:
    return 'iter' in line


def _epoch_ends(train: List[dict]) -> Dict[int, int]:
    """epoch -> its last logged iteration (mmengine's LoggerHook logs the
    last iteration of every epoch)."""
    ends: Dict[int, int] = {}
    for line in train:
        e = int(line['epoch'])
        ends[e] = max(ends.get(e, 0), int(line['iter']))
    return ends


def series(lines: List[dict], key: str) -> Tuple[Series, str]:
    """(xs, ys) of ``key`` and the x unit (``'epoch'`` or ``'iter'``).

    Training values of an epoch-based run sit at fractional epochs (the
    last iteration of epoch e at x = e), so they line up with the values
    logged once per epoch.
    """
    train = [ln for ln in lines if _is_train(ln)]
    by_epoch = bool(train) and all('epoch' in ln for ln in train)
    ends = _epoch_ends(train) if by_epoch else {}
    lengths = {e: ends[e] - ends.get(e - 1, 0) for e in ends}
    xs, ys = [], []
    for line in lines:
        if key not in line:
            continue
        value = line[key]
        if not isinstance(value, (int, float)):
            continue
        if _is_train(line) and by_epoch:
            e, it = int(line['epoch']), int(line['iter'])
            start = ends.get(e - 1, 0)
            # the last epoch may be incomplete: the previous one's length
            n = lengths[e - 1] if e == max(ends) and e - 1 in lengths \
                else lengths[e]
            x = (e - 1) + (it - start) / max(n, 1)
        elif _is_train(line):
            x = float(line['iter'])
        else:
            x = float(line['step'])
        xs.append(x)
        ys.append(float(value))
    return (np.asarray(xs), np.asarray(ys)), 'epoch' if by_epoch else 'iter'


def available_keys(lines: List[dict]) -> List[str]:
    """Every numeric key of the log (``epoch``, ``iter``, ``step`` aside)."""
    keys = {k for ln in lines for k, v in ln.items()
            if k not in _NOT_VALUES and isinstance(v, (int, float))}
    return sorted(keys)


def iter_times(lines: List[dict]) -> List[Tuple[int, np.ndarray]]:
    """(epoch or 0, the ``time`` of its training iterations) per epoch."""
    train = [ln for ln in lines if _is_train(ln) and 'time' in ln]
    groups: Dict[int, list] = {}
    for line in train:
        groups.setdefault(int(line.get('epoch', 0)), []).append(
            float(line['time']))
    return [(e, np.asarray(t)) for e, t in sorted(groups.items())]
