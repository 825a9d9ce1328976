"""Pictures of the architecture weights of a SASE search.

SASE (arXiv 2411.08333) searches one (6, 7) alpha: six edges of the block,
seven candidate operations each (docs/spec.md sections 1-3). Two figures show
it: a heatmap of softmax(alpha) (edges x operations, each cell named, since
every edge has its own operation set, on a fixed 0-1 scale with the uniform
1/7 marked and each edge's margin written beside it, so that a near-uniform
alpha does not look decisive) and each edge's weights over the epochs;
:func:`edge_margins` and :func:`decision_summary` say in numbers and words
which edges are decided. Drawn with matplotlib's object API on the Agg
canvas (no pyplot, no display, the user's backend untouched) and written
atomically (:func:`save_figure`, also for the tools' own alpha figures).
"""
from typing import Sequence

import numpy as np

from ..models.sase import EDGES
from ..utils.atomic import atomic_open


def save_figure(fig, path: str) -> None:
    """Writes a matplotlib ``Figure`` to ``path`` as a PNG (100 dpi, tight
    bounding box) on the Agg canvas, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    with atomic_open(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=100, bbox_inches='tight')


def edge_margins(probs) -> np.ndarray:
    """Each edge's margin: its best weight minus its second best, (6,)."""
    top2 = np.sort(np.asarray(probs, dtype=float), axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def decision_summary(undecided, threshold: float) -> str:
    """One line on which edges are decided, for the end of a search.

    Args:
        undecided: (edge name, margin) of the edges below ``threshold``.
        threshold: the margin an edge needs to count as decided.
    """
    if not undecided:
        return (f'Every edge is decided (margin >= {threshold:g} between the '
                f'best and the second-best weight).')
    names = ', '.join(f'{n} ({m:.3f})' for n, m in undecided)
    return (f'Not yet decided (margin < {threshold:g}; the choice there is '
            f'still noise): {names}. Search more epochs '
            f'(--cfg-options train_cfg.max_epochs=N) before trusting them.')


def plot_alpha_heatmap(probs, path: str, title: str = '',
                       margin_threshold: float = 0.0) -> None:
    """Heatmap of softmax(alpha) on a fixed scale.

    The colour scale runs from 0 to 1 whatever the data (near-uniform
    weights look near-uniform), the uniform value 1/7 is marked on the
    colour bar, and each edge is labelled with its margin (best minus second
    best), flagged "undecided" below ``margin_threshold``.

    Args:
        probs: (6, 7) array-like, rows summing to 1.
        path: the PNG to write.
        title: figure title.
        margin_threshold: margins below this are flagged.
    """
    from matplotlib.figure import Figure
    probs = np.asarray(probs, dtype=float)
    uniform = 1.0 / probs.shape[1]
    margins = edge_margins(probs)
    fig = Figure(figsize=(14, 5))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(probs, cmap='viridis', aspect='auto', vmin=0.0, vmax=1.0)
    best = probs.argmax(axis=1)
    for i, edge in enumerate(EDGES):
        for j, op in enumerate(edge.op_set.names):
            mark = '*' if j == best[i] else ''
            ax.text(j, i, f'{mark}{op}\n{probs[i, j]:.3f}', ha='center',
                    va='center', fontsize=7,
                    color='black' if probs[i, j] > 0.5 else 'white')
    ax.set_yticks(range(len(EDGES)))
    ax.set_yticklabels([
        f'{e.name}\nmargin {m:.3f}'
        f'{" (undecided)" if m < margin_threshold else ""}'
        for e, m in zip(EDGES, margins)], fontsize=8)
    ax.set_xticks(range(probs.shape[1]))
    ax.set_xticklabels([f'op {j}' for j in range(probs.shape[1])])
    ax.set_xlabel('operation (name in each cell, * = argmax); margin = best '
                  'minus second-best weight')
    ax.set_title(title or 'softmax(alpha)')
    bar = fig.colorbar(im, ax=ax)
    bar.ax.axhline(uniform, color='red', linewidth=2)
    bar.set_ticks(sorted({0.0, uniform, 0.25, 0.5, 0.75, 1.0}))
    bar.set_ticklabels([f'1/{probs.shape[1]} (uniform)' if t == uniform
                        else f'{t:g}' for t in bar.get_ticks()])
    save_figure(fig, path)


def plot_alpha_history(epochs: Sequence[int], history, path: str) -> None:
    """Each edge's softmax(alpha) over epochs, one panel per edge, with
    integer epoch ticks and the uniform value 1/7 as a dashed line.

    Args:
        epochs: (E,) epoch numbers.
        history: (E, 6, 7) array-like of softmax(alpha).
        path: the PNG to write.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    history = np.asarray(history, dtype=float).reshape(len(epochs),
                                                       len(EDGES), -1)
    fig = Figure(figsize=(15, 8))
    for i, edge in enumerate(EDGES):
        ax = fig.add_subplot(2, 3, i + 1)
        for j, op in enumerate(edge.op_set.names):
            ax.plot(epochs, history[:, i, j], marker='.', label=op)
        ax.axhline(1.0 / history.shape[2], color='grey', linestyle='--',
                   linewidth=1, label='uniform')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(edge.name)
        ax.set_xlabel('epoch')
        ax.set_ylabel('softmax(alpha)')
        ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path)
