"""tools/analysis/evaluate_genotypes.py: a search config's fixed network
trained with each candidate attention of SASE (arXiv 2411.08333)'s
comparisons (a searched genotype, the paper's, zoo modules, none, random
blocks) for several seeds; the three result files, their statistics, a
killed study resumed without redoing a finished run, and bad input
refused with a message naming it.

The study runs the real digits search config shrunk to a depth-8 CIFAR
ResNet with 8 channels on 8 x 8 digits, 1 epoch of 2 batches of 8
(``TINY_DIGITS``): about a second per run."""
import json
import os
import os.path as osp
import re
import statistics

import pytest
from data_utils import payloads
from data_utils.tool_runs import (TINY_DIGITS, config_path, help_text,
                                  load_tool)

from sase_mm.apis import tool_args
from sase_mm.models.sase import SASE_PAPER_GENOTYPE
from sase_mm.models.sase.random_genotypes import sample_genotypes

tool = load_tool('analysis/evaluate_genotypes')
DIGITS = config_path('search/sase_r8_digits.py')
# Two-sided 95% Student-t quantile with 1 degree of freedom (2 seeds).
T_975_1 = 12.706204736174698


def _argv(work_dir, candidates, seeds=2, extra=()):
    return [DIGITS, '--work-dir', str(work_dir), '--seeds', str(seeds),
            '--candidates', *candidates, *extra, '--cfg-options',
            *TINY_DIGITS, 'log_level=WARNING']


class _Counting:
    """Wraps ``train_one``: records each (candidate, seed) trained, and
    raises KeyboardInterrupt (a killed study) at call ``kill_at``, after
    the run has begun writing its work dir."""

    def __init__(self, kill_at=None):
        self.real, self.kill_at, self.calls = tool.train_one, kill_at, []

    def __call__(self, cfg, rec, candidate, seed, work_dir):
        self.calls.append((candidate['name'], seed))
        if len(self.calls) == self.kill_at:
            run = osp.join(work_dir, 'runs', candidate['name'],
                           f'seed_{seed}')
            os.makedirs(run, exist_ok=True)
            open(osp.join(run, 'partial.log'), 'w').close()
            raise KeyboardInterrupt
        return self.real(cfg, rec, candidate, seed, work_dir)


def _run(argv, counting):
    tool.train_one = counting
    try:
        return tool.main(argv)
    finally:
        tool.train_one = counting.real


@pytest.fixture(scope='module')
def study(tmp_path_factory):
    """Killed during its third run (paper and none, 2 seeds), then rerun
    with se added: 6 runs trained in all."""
    work = tmp_path_factory.mktemp('study')
    first = _Counting(kill_at=3)
    with pytest.raises(KeyboardInterrupt):
        _run(_argv(work, ['paper', 'none']), first)
    with open(work / 'results.json') as f:
        after_kill = json.load(f)
    second = _Counting()
    result = _run(_argv(work, ['paper', 'none', 'se']), second)
    return dict(work=work, first=first.calls, after_kill=after_kill,
                second=second.calls, result=result)


def test_resume_keeps_finished_runs_and_redoes_the_killed_one(study):
    # Seed by seed: the kill came during (paper, seed 1).
    assert study['first'] == [('paper', 0), ('none', 0), ('paper', 1)]
    assert [(r['candidate'], r['seed']) for r in
            study['after_kill']['runs']] == [('paper', 0), ('none', 0)]
    assert study['second'] == [('se', 0), ('paper', 1), ('none', 1),
                               ('se', 1)]
    with open(study['work'] / 'results.json') as f:
        runs = json.load(f)['runs']
    assert runs[:2] == study['after_kill']['runs']  # kept as they were
    assert len(runs) == 6


def test_the_same_command_again_trains_nothing(study, capsys):
    counting = _Counting()
    again = _run(_argv(study['work'], ['paper', 'none', 'se']), counting)
    assert counting.calls == []
    assert again['runs'] == study['result']['runs']
    assert '6 finished, kept from results.json' in capsys.readouterr().out


def test_records(study):
    with open(study['work'] / 'results.json') as f:
        data = json.load(f)
    assert data['format'] == tool.FORMAT
    assert data['setup']['epochs'] == 1
    assert data['setup']['random_seed'] == tool.RANDOM_SEED
    runs = {(r['candidate'], r['seed']): r for r in data['runs']}
    assert set(runs) == {(c, s) for c in ('paper', 'none', 'se')
                         for s in (0, 1)}
    paper, none, se = runs['paper', 0], runs['none', 0], runs['se', 0]
    assert paper['genotype'] == list(SASE_PAPER_GENOTYPE)
    assert paper['attention'] == dict(type='sase_mm.SASE',
                                      genotype=list(SASE_PAPER_GENOTYPE))
    assert none['attention'] is None and none['genotype'] is None
    assert se['attention'] == dict(type='sase_mm.SE')
    for r in data['runs']:
        assert 0 <= r['top1'] <= 100 and r['train_seconds'] > 0
        assert osp.isdir(study['work'] / r['work_dir'])
    # The same network; the attention adds parameters (SASE more than SE).
    assert none['params'] < se['params'] < paper['params']
    assert runs['paper', 1]['params'] == paper['params']
    assert not list((study['work'] / 'runs').rglob('*.pth'))


def test_statistics_from_the_records(study):
    with open(study['work'] / 'results.json') as f:
        data = json.load(f)
    acc = {}
    for r in data['runs']:
        acc.setdefault(r['candidate'], {})[r['seed']] = r['top1']
    for name, stats in data['candidates'].items():
        values = [acc[name][s] for s in (0, 1)]
        assert stats['n'] == 2 and stats['seeds'] == [0, 1]
        assert stats['mean'] == pytest.approx(statistics.mean(values))
        assert stats['std'] == pytest.approx(statistics.stdev(values))
        assert stats['vs_random'] is None  # no random candidate here
    assert data['candidates']['none']['vs_none'] is None
    for name in ('paper', 'se'):
        diffs = [acc[name][s] - acc['none'][s] for s in (0, 1)]
        d = data['candidates'][name]['vs_none']
        half = T_975_1 * statistics.stdev(diffs) / 2 ** 0.5
        assert d['n'] == 2 and d['mean'] == pytest.approx(
            statistics.mean(diffs))
        assert (d['low'], d['high']) == pytest.approx(
            (d['mean'] - half, d['mean'] + half))


def test_table_and_plot(study):
    with open(study['work'] / 'results.json') as f:
        data = json.load(f)
    md = (study['work'] / 'results.md').read_text()
    rows = [line for line in md.splitlines() if line.startswith('| ')]
    assert rows[0].startswith('| candidate | params | top-1 mean ± std')
    assert [r.split(' | ')[0] for r in rows[1:]] == ['| paper', '| none',
                                                    '| se']
    for row in rows[1:]:
        name = row.split(' | ')[0][2:]
        s = data['candidates'][name]
        assert f'{s["params"]:,}' in row
        assert f'{s["mean"]:.2f} ± {s["std"]:.2f} (n=2)' in row
        if name != 'none':
            d = s['vs_none']
            assert f'{d["mean"]:+.2f} [{d["low"]:+.2f}, {d["high"]:+.2f}] ' \
                f'(n=2)' in row
    assert '--candidates paper none se' in md  # the last command
    with open(study['work'] / 'results.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert not [n for n in os.listdir(study['work']) if n.endswith('.tmp')]


def test_random_candidates_expand_deterministically():
    a = tool.resolve_candidates(['random:3'])
    assert a == tool.resolve_candidates(['random:3'])
    assert [c['name'] for c in a] == ['random_0', 'random_1', 'random_2']
    assert [c['genotype'] for c in a] == [
        list(g) for g in sample_genotypes(3, tool.RANDOM_SEED)]
    assert [c['random'] for c in a] == [
        dict(seed=tool.RANDOM_SEED, index=i) for i in range(3)]
    assert tool.resolve_candidates(['random:2']) == a[:2]
    # The searched block's options go with every genotype.
    (paper, ) = tool.resolve_candidates(
        ['paper'], dict(type='sase_mm.SASESearch', fc_sigmoid=True))
    assert paper['attention']['fc_sigmoid'] is True


def test_zoo_and_file_candidates(tmp_path):
    g = sample_genotypes(1, 7)[0]
    path = tmp_path / 'genotype.json'
    g.save(str(path))
    eca, cbam, f = tool.resolve_candidates(['eca', 'CBAM', str(path)])
    assert eca['attention'] == dict(type='sase_mm.ECA')
    assert cbam['attention'] == dict(type='sase_mm.CBAM')
    assert (f['kind'], f['genotype']) == ('file', list(g))
    assert f['name'] == str(path)
    assert '/' not in tool.run_dir_name(f['name'])


def _error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as err:
        tool_args.run_main(tool.main, argv)
    assert err.value.code == 1
    return capsys.readouterr().err


@pytest.mark.parametrize('candidates,why', [
    (['paper', 'sse'], "unknown candidate 'sse'; valid: a genotype file"),
    (['random:0'], r"random:K takes a number of random genotypes K in \[1, "
     r'117649\]'),
    (['random:x'], 'random:K takes'),
    (['none', 'none'], 'candidates given twice: none'),
    (['no/such/genotype.json'], "genotype file 'no/such/genotype.json' "
     'does not exist'),
])
def test_bad_candidates(candidates, why, tmp_path, capsys):
    err = _error(_argv(tmp_path / 'w', candidates), capsys)
    assert err.startswith('error: ')
    assert re.search(why, err), err
    if 'unknown' in why:  # names every form and the zoo
        for name in ('paper', 'none', 'random:K', 'se', 'eca', 'cbam',
                     'gatedct'):
            assert name in err
    assert not (tmp_path / 'w').exists()


def test_bad_genotype_file(tmp_path, capsys):
    path = tmp_path / 'bad.json'
    path.write_text('{"genotype": ["gap", "fc"]}')
    err = _error(_argv(tmp_path / 'w', ['none', str(path)]), capsys)
    assert f'cannot read a SASE genotype from {str(path)!r}' in err
    assert 'has 6 edges' in err


def test_a_genotype_file_is_never_executed(tmp_path, capsys):
    marker = tmp_path / 'ran'
    path = payloads.code_genotype_py(str(tmp_path / 'genotype.py'),
                                     str(marker))
    err = _error(_argv(tmp_path / 'w', ['none', path]), capsys)
    assert f'cannot read a SASE genotype from {path!r}' in err
    assert 'it is not executed' in err and not marker.exists()


@pytest.mark.parametrize('flag,why', [
    (['--seeds', '0'], '--seeds must be >= 1'),
    (['--epochs', '0'], '--epochs must be >= 1'),
    (['--launcher', 'pytorch'], 'runs in one process'),
])
def test_bad_numbers(flag, why, tmp_path, capsys):
    argv = _argv(tmp_path / 'w', ['none'])
    argv[argv.index('--seeds'):argv.index('--seeds') + 2] = flag
    assert why in _error(argv, capsys)


@pytest.mark.parametrize('config,why', [
    ('search/sase_faster_rcnn_r50_fpn_coco.py',
     "model.supernet ('FasterRCNN') has no attn_cfg"),
    ('imagenet/sase_r50_8xb16_in1k.py', "its model is 'ImageClassifier', "
     'not a search model'),
])
def test_a_config_without_a_fixed_network_is_refused(config, why, tmp_path,
                                                     capsys):
    err = _error([config_path(config), '--work-dir', str(tmp_path / 'w'),
                  '--candidates', 'none'], capsys)
    assert why in err
    assert "Expected a search config whose model is a sase_mm.DARTSSearch" \
        in err


def _corrupt(study, tmp_path, edit) -> str:
    """A copy of the study's results.json changed by ``edit`` (a function
    of the parsed data, or the new text)."""
    work = tmp_path / 'w'
    work.mkdir()
    with open(study['work'] / 'results.json') as f:
        data = json.load(f)
    text = edit if isinstance(edit, str) else json.dumps(edit(data) or data)
    (work / 'results.json').write_text(text)
    return str(work)


def _set(path, value):
    def edit(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


@pytest.mark.parametrize('edit,why', [
    ('{"format": "sase_mm.evaluate_genotypes/1", "runs": [',
     'it is not valid JSON'),
    ('[' * 100000 + ']' * 100000, 'nested too deeply|not valid JSON|not a '
     'results file'),
    ('[]', 'not a results file of this tool'),
    (_set(['format'], 'x/2'), 'not a results file of this tool'),
    (_set(['runs'], {}), 'lacks "setup"'),
    (_set(['setup', 'recipe_sha256'], '0' * 64), 'another recipe'),
    (_set(['runs', 0, 'top1'], 'NaN'), '"top1" must be a number'),
    (_set(['runs', 0, 'top1'], 101), '"top1" must be a number in'),
    (_set(['runs', 0, 'seed'], True), '"seed" must be an int'),
    (_set(['runs', 0, 'params'], -1), '"params" must be an int'),
    (_set(['runs', 0, 'kind'], 'magic'), '"kind" must be one of'),
    (_set(['runs', 0, 'genotype'], ['gap'] * 6), 'run 0: "genotype"'),
    (_set(['runs', 0, 'attention'], 'import os'), '"attention" must be '
     'null or an attn_cfg'),
    (_set(['runs', 0], {'candidate': 'paper'}), 'run 0 is not an object '
     'with the keys'),
    (lambda d: d['runs'].append(d['runs'][0]), r'holds run \(paper, seed '
     r'0\) twice'),
    (_set(['runs', 0, 'attention'], dict(type='sase_mm.SE')),
     "runs of candidate 'paper' trained the attention"),
])
def test_crafted_results_are_refused(study, edit, why, tmp_path, capsys):
    work = _corrupt(study, tmp_path, edit)
    before = open(osp.join(work, 'results.json')).read()
    argv = _argv(work, ['paper', 'none', 'se'])
    err = _error(argv, capsys)
    assert re.search(why, err), err
    assert 'results.json cannot be resumed from' in err
    assert open(osp.join(work, 'results.json')).read() == before


def test_another_recipe_is_named(study, tmp_path, capsys):
    work = _corrupt(study, tmp_path, lambda d: None)
    err = _error(_argv(work, ['none'], extra=['--epochs', '2']), capsys)
    assert '1 epochs of' in err and 'now 2 epochs of' in err


def test_help(capsys):
    out = help_text(tool, capsys)
    for flag in ('--candidates', '--seeds', '--epochs', '--cfg-options',
                 '--work-dir'):
        assert flag in out
