"""Pictures of the architecture weights of a SASE search.

SASE (arXiv 2411.08333) searches one (6, 7) alpha: six edges of the block,
seven candidate operations each (docs/spec.md sections 1-3). Two figures show
it: a heatmap of softmax(alpha) (edges x operations, each cell named, since
every edge has its own operation set) and each edge's weights over the
epochs. Drawn with matplotlib's object API on the Agg canvas (no pyplot,
no display, the user's backend untouched) and written atomically.
"""
from typing import Sequence

import numpy as np

from ..models.sase import EDGES
from ..utils.atomic import atomic_open


def _save_atomic(fig, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    with atomic_open(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=100, bbox_inches='tight')


def plot_alpha_heatmap(probs, path: str, title: str = '') -> None:
    """Heatmap of softmax(alpha).

    Args:
        probs: (6, 7) array-like, rows summing to 1.
        path: the PNG to write.
        title: figure title.
    """
    from matplotlib.figure import Figure
    probs = np.asarray(probs, dtype=float)
    fig = Figure(figsize=(14, 5))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(probs, cmap='viridis', aspect='auto')
    best = probs.argmax(axis=1)
    for i, edge in enumerate(EDGES):
        for j, op in enumerate(edge.op_set.names):
            mark = '*' if j == best[i] else ''
            ax.text(j, i, f'{mark}{op}\n{probs[i, j]:.3f}', ha='center',
                    va='center', fontsize=7,
                    color='black' if probs[i, j] > probs.mean() else 'white')
    ax.set_yticks(range(len(EDGES)))
    ax.set_yticklabels([e.name for e in EDGES])
    ax.set_xticks(range(probs.shape[1]))
    ax.set_xticklabels([f'op {j}' for j in range(probs.shape[1])])
    ax.set_xlabel('operation (name in each cell, * = argmax)')
    ax.set_title(title or 'softmax(alpha)')
    fig.colorbar(im, ax=ax)
    _save_atomic(fig, path)


def plot_alpha_history(epochs: Sequence[int], history, path: str) -> None:
    """Each edge's softmax(alpha) over epochs, one panel per edge.

    Args:
        epochs: (E,) epoch numbers.
        history: (E, 6, 7) array-like of softmax(alpha).
        path: the PNG to write.
    """
    from matplotlib.figure import Figure
    history = np.asarray(history, dtype=float).reshape(len(epochs),
                                                       len(EDGES), -1)
    fig = Figure(figsize=(15, 8))
    for i, edge in enumerate(EDGES):
        ax = fig.add_subplot(2, 3, i + 1)
        for j, op in enumerate(edge.op_set.names):
            ax.plot(epochs, history[:, i, j], marker='.', label=op)
        ax.set_title(edge.name)
        ax.set_xlabel('epoch')
        ax.set_ylabel('softmax(alpha)')
        ax.legend(fontsize=6)
    fig.tight_layout()
    _save_atomic(fig, path)
