"""Figures of a SASE search and of trainings (arXiv 2411.08333).

* ``alpha_plots.py``: softmax(alpha) as a heatmap and over the epochs, and
  which edges are decided;
* ``scalars.py``: mmengine's scalar logs read as series;
* ``curves.py``: training and search curves drawn from them.

Drawn with matplotlib's object API (no pyplot) and written atomically. The
hooks (``engine/``) and the tools draw through here; nothing here imports
``engine/``.
"""
from .alpha_plots import (decision_summary, edge_margins, plot_alpha_heatmap,
                          plot_alpha_history)
from .curves import plot_curves, plot_run_curves

__all__ = ['decision_summary', 'edge_margins', 'plot_alpha_heatmap',
           'plot_alpha_history', 'plot_curves', 'plot_run_curves']
