"""tools/analysis/analyze_logs.py: curves and iteration times of a SASE
search's (arXiv 2411.08333) and a training's mmengine scalar logs, written
here with mmengine's own LocalVisBackend in the layout a Runner uses (the
library: tests/visualization/test_curves.py)."""
import os.path as osp

import numpy as np
import pytest

from data_utils.scalar_logs import write_search_log
from data_utils.tool_runs import load_tool

tool = load_tool('analysis/analyze_logs')


def test_plot_curve_search_keys(tmp_path, capsys):
    log = write_search_log(str(tmp_path / 'work'))
    out = str(tmp_path / 'curves.png')
    drawn = tool.main(['plot_curve', log, '--keys', 'loss', 'loss_search',
                       'accuracy/top1', '--out', out])
    assert osp.isfile(out) and 'curves.png' in capsys.readouterr().out
    series = drawn[log]
    assert set(series) == {'loss', 'loss_search', 'accuracy/top1'}
    xs, ys = series['loss']
    # Logged at iterations 2, 4, 5 of every epoch: fractional epochs that
    # end on the integer epoch, where the validation points sit.
    np.testing.assert_allclose(xs[:3], [0.4, 0.8, 1.0])
    np.testing.assert_allclose(xs[-3:], [2.4, 2.8, 3.0])
    np.testing.assert_allclose(ys[0], 3.0 / 2)
    np.testing.assert_array_equal(series['accuracy/top1'][0], [1, 2, 3])
    np.testing.assert_array_equal(series['accuracy/top1'][1], [20, 40, 60])

    from matplotlib.image import imread
    assert imread(out).shape[:2] == (500, 1200)  # --window-size 12*5, dpi 100


def test_work_dir_several_logs_and_legend(tmp_path):
    old = write_search_log(str(tmp_path / 'a'), '20240101_000000')
    new = write_search_log(str(tmp_path / 'a'), '20240102_000000')
    other = write_search_log(str(tmp_path / 'b'))
    # A work dir reads its newest run.
    drawn = tool.main(['plot_curve', str(tmp_path / 'a'), other, '--keys',
                       'loss', 'alpha/channel_squeeze/gap', '--legend', 'a',
                       'a alpha', 'b', 'b alpha', '--out',
                       str(tmp_path / 'c.png'), '--window-size', '8*4'])
    assert set(drawn) == {new, other} and old not in drawn


def test_missing_key_lists_the_keys(tmp_path):
    log = write_search_log(str(tmp_path / 'w'))
    with pytest.raises(KeyError, match='loss_search'):
        tool.main(['plot_curve', log, '--keys', 'coco/bbox_mAP', '--out',
                   str(tmp_path / 'x.png')])
    assert not (tmp_path / 'x.png').exists()
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        tool.main(['plot_curve', str(tmp_path / 'nowhere'), '--out',
                   str(tmp_path / 'z.png')])


def test_cal_train_time(tmp_path, capsys):
    log = write_search_log(str(tmp_path / 'w'))
    means = tool.main(['cal_train_time', log])
    # Per epoch, without its first logged iteration: 0.1, 0.2, 0.3 s.
    assert means[log] == pytest.approx(0.2)
    out = capsys.readouterr().out
    assert 'slowest epoch 3' in out and 'fastest epoch 1' in out
    # With the outliers: the same here (all iterations of an epoch equal).
    assert tool.main(['cal_train_time', log, '--include-outliers'])[log] == \
        pytest.approx(0.2)


def test_help(capsys):
    for argv in (['--help'], ['plot_curve', '--help'],
                 ['cal_train_time', '--help']):
        with pytest.raises(SystemExit) as err:
            tool.parse_args(argv)
        assert err.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith('usage:') and '--keys' in out and '--out' in out
    with pytest.raises(SystemExit):
        tool.parse_args(['plot_curve', 'x.json', '--window-size', '12x5'])
