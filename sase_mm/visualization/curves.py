"""Training and search curves from mmengine's scalar logs.

A SASE search (arXiv 2411.08333, docs/spec.md section 3) and the downstream
trainings log through mmengine's ``LocalVisBackend`` (read by
``scalars.py``). :func:`plot_curves` draws chosen keys against the epoch
(training values at fractional epochs) or, for iteration-based runs, the
iteration; keys containing ``loss`` share one panel, every other key has
its own. ``tools/analysis/analyze_logs.py plot_curve`` and the search's
work dir (:func:`plot_run_curves`, called by ``GenotypeHook``) use it.
Drawn with matplotlib's object API on the Agg canvas (no pyplot, the
user's backend untouched) and written atomically.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

from ..utils.atomic import atomic_open
from .scalars import (available_keys, find_scalars, load_scalars,
                      scalars_path, series)

#: What the search's curve shows: the weight step's loss, the alpha step's
#: loss and the held-out accuracy.
SEARCH_KEYS = ('loss', 'loss_search', 'accuracy/top1')


def _panels(keys: Sequence[str]) -> List[List[str]]:
    losses = [k for k in keys if 'loss' in k]
    panels = [losses] if losses else []
    panels += [[k] for k in keys if 'loss' not in k]
    return panels


def plot_curves(scalars_json: Union[str, Sequence[str]],
                keys: Sequence[str], out: str, title: Optional[str] = None,
                legend: Optional[Sequence[str]] = None, strict: bool = True,
                figsize: Tuple[float, float] = (12, 5)) -> Dict[str, dict]:
    """Plots ``keys`` of one or several scalar logs into ``out`` (PNG).

    Args:
        scalars_json: a scalars.json or a work dir (its newest run), or a
            list of them (one curve per log and key).
        keys: the values to plot, e.g. ``['loss', 'loss_search',
            'accuracy/top1']``.
        out: the PNG to write.
        title: figure title (default: the logs' paths).
        legend: one label per (log, key), in that order (default
            ``<run>: <key>`` with several logs, ``<key>`` with one).
        strict: a key absent from a log is an error listing the keys it
            has; False skips it (the search's own curve, whose run may have
            no validation), and writes nothing when no key is there.

    Returns:
        dict: log path -> {key: (xs, ys)} of what was drawn (empty dicts
        when nothing was).

    Raises:
        KeyError: ``strict`` and a key absent from a log.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    paths = [scalars_json] if isinstance(scalars_json, str) else \
        list(scalars_json)
    paths = [find_scalars(p) for p in paths]
    logs = [load_scalars(p) for p in paths]
    if legend is not None and len(legend) != len(paths) * len(keys):
        raise ValueError(f'legend: one label per log and key '
                         f'({len(paths) * len(keys)}), got {len(legend)}')
    drawn: Dict[str, dict] = {p: {} for p in paths}
    for path, lines in zip(paths, logs):
        have = available_keys(lines)
        for key in keys:
            if key in have:
                drawn[path][key] = None
            elif strict:
                raise KeyError(f'{path}: no key {key!r}; the log has '
                               f'{", ".join(have) or "no values"}')
    panels = [p for p in _panels(list(keys))
              if any(k in drawn[path] for path in paths for k in p)]
    if not panels:
        if strict:  # (no keys at all)
            raise KeyError(f'none of {list(keys)} is in {", ".join(paths)}')
        return {p: {} for p in paths}
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, len(panels), i + 1)
            for i in range(len(panels))]
    labels = {}
    for r, path in enumerate(paths):
        for k, key in enumerate(keys):
            labels[r, key] = legend[r * len(keys) + k] if legend else (
                key if len(paths) == 1 else f'{_run_name(path)}: {key}')
    x_end = 0.
    for ax, panel in zip(axes, panels):
        unit = 'iter'
        for r, (path, lines) in enumerate(zip(paths, logs)):
            for key in panel:
                if key not in drawn[path]:
                    continue
                (xs, ys), unit = series(lines, key)
                drawn[path][key] = (xs, ys)
                label = labels[r, key]
                style = '-' if len(xs) > 20 else '.-'
                ax.plot(xs, ys, style, label=label, linewidth=1)
                x_end = max([x_end, *xs])
        ax.set_xlabel(unit)
        ax.set_ylabel('loss' if len(panel) > 1 or 'loss' in panel[0]
                      else panel[0])
        ax.grid(True, linewidth=0.3)
        ax.legend(fontsize=8)
    if x_end > 0:  # one time axis: a lone validation point sits at its epoch
        for ax in axes:
            ax.set_xlim(0, x_end * 1.02)
    fig.suptitle(title or '\n'.join(paths), fontsize=9)
    fig.tight_layout()
    with atomic_open(out, 'wb') as f:
        fig.savefig(f, format='png', dpi=100)
    return {p: {k: v for k, v in d.items() if v is not None}
            for p, d in drawn.items()}


def plot_run_curves(runner, out: str,
                    keys: Sequence[str] = SEARCH_KEYS) -> Optional[str]:
    """The curves of a runner's own scalar log, for a hook (e.g. the
    search's ``GenotypeHook.after_train``, beside the alpha plots).

    Skips, returning None, when the runner writes no scalars.json (no
    ``LocalVisBackend``) or none of ``keys`` is in it; keys it lacks (no
    validation) are left out. Returns ``out`` when written.
    """
    path = scalars_path(runner)
    if not osp.isfile(path):
        return None
    drawn = plot_curves(path, keys, out, strict=False,
                        title=f'{getattr(runner, "experiment_name", "")}\n'
                        f'{path}')
    return out if drawn[path] else None


def _run_name(path: str) -> str:
    """``<work dir>/<timestamp>`` of ``.../vis_data/scalars.json``."""
    parts = os.path.normpath(path).split(os.sep)
    if len(parts) >= 4 and parts[-2] == 'vis_data':
        return '/'.join(parts[-4:-2])
    return osp.basename(path)
