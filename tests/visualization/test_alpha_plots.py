"""visualization/alpha_plots.py: the pictures and the verdict of a SASE
search's alpha (arXiv 2411.08333): six edges, seven operations each."""
import glob
import os

import numpy as np
import pytest

from sase_mm.visualization.alpha_plots import (decision_summary,
                                               edge_margins,
                                               plot_alpha_heatmap,
                                               plot_alpha_history,
                                               save_figure)


def _probs(seed=0, sharp=1.0):
    logits = np.random.default_rng(seed).normal(size=(6, 7)) * sharp
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_margin_is_best_minus_second_best():
    probs = np.full((6, 7), 0.1)
    probs[:, 0], probs[2, 3] = 0.4, 0.25
    np.testing.assert_allclose(edge_margins(probs),
                               [0.3, 0.3, 0.15, 0.3, 0.3, 0.3])


def test_decision_summary_names_the_undecided_edges():
    assert decision_summary([], 0.05).startswith('Every edge is decided')
    text = decision_summary([('fc', 0.0123)], 0.05)
    assert 'fc (0.012)' in text and 'train_cfg.max_epochs' in text


@pytest.mark.parametrize('draw', ['heatmap', 'history'])
def test_figures_are_pngs_written_whole(draw, tmp_path):
    from matplotlib.image import imread
    path = str(tmp_path / f'{draw}.png')
    if draw == 'heatmap':
        plot_alpha_heatmap(_probs(), path, margin_threshold=0.1)
    else:
        plot_alpha_history([1, 2, 3], np.stack([_probs(s) for s in
                                                range(3)]), path)
    img = imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) > 300
    assert img.std() > 0  # something was drawn
    assert os.listdir(tmp_path) == [f'{draw}.png']  # no temporary left


def test_save_figure_keeps_the_old_file_when_drawing_fails(tmp_path):
    from matplotlib.figure import Figure
    path = tmp_path / 'fig.png'
    path.write_bytes(b'old')
    fig = Figure()
    fig.add_subplot(1, 1, 1).text(0, 0, '$\\unknowncommand$')  # mathtext
    with pytest.raises(ValueError):
        save_figure(fig, str(path))
    assert path.read_bytes() == b'old'
    assert not glob.glob(str(tmp_path / '.*.tmp'))
