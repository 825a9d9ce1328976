"""visualization/scalars.py and curves.py: mmengine's scalar logs of a SASE
search (arXiv 2411.08333) read as series and drawn, written here with
mmengine's own LocalVisBackend in the layout a Runner uses (the command
line: tests/tools/test_analyze_logs.py)."""
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
from data_utils.scalar_logs import EPOCHS, write_search_log

from sase_mm.visualization.curves import (SEARCH_KEYS, plot_curves,
                                          plot_run_curves)
from sase_mm.visualization.scalars import (available_keys, find_scalars,
                                           iter_times, load_scalars, series)


def test_epoch_based_log_at_fractional_epochs(tmp_path):
    log = write_search_log(str(tmp_path / 'w'))
    lines = load_scalars(log)
    (xs, ys), unit = series(lines, 'loss')
    # Logged at iterations 2, 4, 5 of every epoch: fractional epochs that
    # end on the integer epoch, where the validation points sit.
    assert unit == 'epoch'
    np.testing.assert_allclose(xs[:3], [0.4, 0.8, 1.0])
    (vx, vy), _ = series(lines, 'accuracy/top1')
    np.testing.assert_array_equal(vx, np.arange(1, EPOCHS + 1))
    assert 'loss_search' in available_keys(lines)
    assert not {'epoch', 'iter', 'step'} & set(available_keys(lines))


def test_iteration_based_log(tmp_path):
    log = write_search_log(str(tmp_path / 'w'), by_epoch=False)
    (xs, _), unit = series(load_scalars(log), 'loss')
    assert unit == 'iter' and list(xs[:3]) == [2, 4, 5]


def test_a_work_dir_reads_its_newest_run(tmp_path):
    write_search_log(str(tmp_path), '20240101_000000')
    new = write_search_log(str(tmp_path), '20240102_000000')
    assert find_scalars(str(tmp_path)) == new
    assert find_scalars(new) == new
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        find_scalars(str(tmp_path / 'nowhere'))


def test_iteration_times_per_epoch(tmp_path):
    times = iter_times(load_scalars(write_search_log(str(tmp_path))))
    assert [e for e, _ in times] == list(range(1, EPOCHS + 1))
    np.testing.assert_allclose(times[1][1], 0.2)


def test_strict_or_skipping_absent_keys(tmp_path):
    log = write_search_log(str(tmp_path / 'w'))
    with pytest.raises(KeyError, match='loss_search'):  # lists the keys
        plot_curves(log, ['coco/bbox_mAP'], str(tmp_path / 'x.png'))
    assert not (tmp_path / 'x.png').exists()
    # The search's own curve skips what a run did not log (no validation).
    drawn = plot_curves(log, ['loss', 'coco/bbox_mAP'],
                        str(tmp_path / 'y.png'), strict=False)
    assert set(drawn[log]) == {'loss'} and (tmp_path / 'y.png').is_file()


def test_plot_run_curves_for_a_hook(tmp_path):
    """What the search's work dir gets beside the alpha plots."""
    work = tmp_path / 'work'
    write_search_log(str(work), '20240101_000000')
    runner = SimpleNamespace(log_dir=str(work / '20240101_000000'),
                             experiment_name='search')
    out = str(work / 'curves.png')
    assert plot_run_curves(runner, out) == out and osp.isfile(out)
    assert set(SEARCH_KEYS) == {'loss', 'loss_search', 'accuracy/top1'}
    # No scalars.json (no LocalVisBackend), or none of the keys: nothing.
    empty = SimpleNamespace(log_dir=str(tmp_path / 'none'))
    assert plot_run_curves(empty, str(tmp_path / 'a.png')) is None
    assert plot_run_curves(runner, str(tmp_path / 'b.png'),
                           keys=['coco/bbox_mAP']) is None
    assert not (tmp_path / 'a.png').exists()
    assert not (tmp_path / 'b.png').exists()
