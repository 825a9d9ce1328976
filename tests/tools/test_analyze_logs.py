"""tools/analysis/analyze_logs.py and sase_mm.engine.curves: curves of a SASE
search's (arXiv 2411.08333) and a training's mmengine scalar logs, written
here with mmengine's own LocalVisBackend in the layout a Runner uses."""
import os.path as osp

import numpy as np
import pytest

from data_utils.tool_runs import load_tool

tool = load_tool('analysis/analyze_logs')
EPOCHS, ITERS = 3, 5  # iterations per epoch; logged every 2 and at the end


def _write_search_log(work_dir, timestamp='20240101_000000', by_epoch=True):
    """A search's scalars.json: training lines (epoch, iter, loss,
    loss_search, lr, time), then per epoch the alpha and validation lines,
    as LoggerHook / GenotypeHook write them."""
    from mmengine.visualization import LocalVisBackend
    backend = LocalVisBackend(save_dir=osp.join(work_dir, timestamp,
                                                'vis_data'))
    it = 0
    for epoch in range(1, EPOCHS + 1):
        for inner in range(1, ITERS + 1):
            it += 1
            if inner % 2 and inner != ITERS:
                continue
            line = {'weights.lr': 0.05, 'loss': 3.0 / it,
                    'loss_search': 2.5 / it + 0.1, 'time': 0.1 * epoch,
                    'data_time': 0.01, 'iter': it}
            if by_epoch:
                line['epoch'] = epoch
            backend.add_scalars(line, step=it)
        backend.add_scalars({'alpha/channel_squeeze/gap': 0.1 + 0.01 * epoch},
                            step=epoch if by_epoch else it)
        backend.add_scalars({'accuracy/top1': 20.0 * epoch, 'time': 0.5},
                            step=epoch if by_epoch else it)
    return osp.join(work_dir, timestamp, 'vis_data', 'scalars.json')


def test_plot_curve_search_keys(tmp_path, capsys):
    log = _write_search_log(str(tmp_path / 'work'))
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
    old = _write_search_log(str(tmp_path / 'a'), '20240101_000000')
    new = _write_search_log(str(tmp_path / 'a'), '20240102_000000')
    other = _write_search_log(str(tmp_path / 'b'))
    # A work dir reads its newest run.
    drawn = tool.main(['plot_curve', str(tmp_path / 'a'), other, '--keys',
                       'loss', 'alpha/channel_squeeze/gap', '--legend', 'a',
                       'a alpha', 'b', 'b alpha', '--out',
                       str(tmp_path / 'c.png'), '--window-size', '8*4'])
    assert set(drawn) == {new, other} and old not in drawn


def test_iteration_based_log(tmp_path):
    from sase_mm.engine.curves import series, load_scalars
    log = _write_search_log(str(tmp_path / 'w'), by_epoch=False)
    (xs, _), unit = series(load_scalars(log), 'loss')
    assert unit == 'iter' and list(xs[:3]) == [2, 4, 5]


def test_missing_key_lists_the_keys(tmp_path):
    from sase_mm.engine.curves import plot_curves
    log = _write_search_log(str(tmp_path / 'w'))
    with pytest.raises(KeyError, match='loss_search'):
        tool.main(['plot_curve', log, '--keys', 'coco/bbox_mAP', '--out',
                   str(tmp_path / 'x.png')])
    assert not (tmp_path / 'x.png').exists()
    # The search's own curve skips what a run did not log (no validation).
    drawn = plot_curves(log, ['loss', 'coco/bbox_mAP'],
                        str(tmp_path / 'y.png'), strict=False)
    assert set(drawn[log]) == {'loss'} and (tmp_path / 'y.png').is_file()
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        tool.main(['plot_curve', str(tmp_path / 'nowhere'), '--out',
                   str(tmp_path / 'z.png')])


def test_cal_train_time(tmp_path, capsys):
    log = _write_search_log(str(tmp_path / 'w'))
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


def test_plot_run_curves_for_a_hook(tmp_path):
    """What the search's work dir gets beside the alpha plots."""
    from types import SimpleNamespace

    from sase_mm.engine.curves import SEARCH_KEYS, plot_run_curves
    work = tmp_path / 'work'
    _write_search_log(str(work), '20240101_000000')
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
