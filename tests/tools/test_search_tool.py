"""tools/search.py and the search configs (SASE, arXiv 2411.08333;
docs/spec.md section 3): the paper's hyper-parameters, the digits demo shrunk
to seconds, resuming from the command line, and missing CIFAR data."""
import os.path as osp

import pytest
from data_utils.tool_runs import TINY_DIGITS as TINY
from data_utils.tool_runs import REPO, config_path, load_tool
from mmengine.config import Config

from sase_mm.models.sase import Genotype

CIFAR = config_path('search/sase_r20_cifar10.py')
DIGITS = config_path('search/sase_r8_digits.py')


def test_cifar_config_has_the_papers_hyper_parameters():
    cfg = Config.fromfile(CIFAR)
    assert cfg.model.order == 2
    assert cfg.model.supernet.depth == 20
    assert cfg.model.supernet.attn_cfg.type == 'sase_mm.SASESearch'
    assert cfg.train_cfg.max_epochs == 50
    assert cfg.train_dataloader.batch_size == 128
    assert cfg.train_cfg.search_dataloader.batch_size == 128
    assert cfg.train_dataloader.dataset.data_root == 'data/cifar10'
    assert cfg.train_dataloader.dataset.split == 'train'
    assert cfg.train_cfg.search_dataloader.dataset.split == 'search'
    assert cfg.train_dataloader.dataset.search_fraction == 0.5
    w, a = cfg.optim_wrapper.weights, cfg.optim_wrapper.alphas
    assert (w.optimizer.type, w.optimizer.lr, w.optimizer.momentum,
            w.optimizer.weight_decay) == ('SGD', 0.025, 0.9, 5e-4)
    assert w.clip_grad.max_norm == 5
    assert (a.optimizer.type, a.optimizer.lr, tuple(a.optimizer.betas),
            a.optimizer.weight_decay) == ('Adam', 3e-4, (0.5, 0.999), 1e-3)
    (cos, ) = cfg.param_scheduler.weights
    assert (cos.type, cos.T_max, cos.eta_min) == ('CosineAnnealingLR', 50,
                                                  1e-4)
    assert cfg.param_scheduler.alphas == []


def test_missing_cifar_is_a_clear_error(tmp_path):
    tool = load_tool('search')
    with pytest.raises(FileNotFoundError, match='cifar-10-batches-py'):
        tool.main([CIFAR, '--work-dir', str(tmp_path), '--cfg-options',
                   f'train_dataloader.dataset.data_root={tmp_path}/none',
                   'train_dataloader.num_workers=0',
                   'train_dataloader.persistent_workers=False'])


def test_digits_search_end_to_end_and_resume(tmp_path, capsys):
    tool = load_tool('search')
    work = str(tmp_path / 'demo')
    runner = tool.main([DIGITS, '--work-dir', work, '--cfg-options'] + TINY)
    out = capsys.readouterr().out
    genotype = Genotype.from_alphas(runner.model.alphas)
    assert f'Searched genotype: {genotype}' in out
    assert 'Held-out accuracy/top1:' in out
    for name in ('genotype.json', 'genotype.py', 'alphas_heatmap.png',
                 'alphas_history.png', 'epoch_1.pth'):
        assert osp.isfile(osp.join(work, name)), name
    assert Genotype.load(osp.join(work, 'genotype.py')) == genotype

    # --resume (auto): continue the same search for one more epoch.
    more = [o for o in TINY if not o.startswith(('train_cfg.max_epochs',
                                                 'param_scheduler'))]
    more += ['train_cfg.max_epochs=2', 'param_scheduler.weights.0.T_max=2',
             'param_scheduler.weights.0.end=2']
    resumed = tool.main([DIGITS, '--work-dir', work, '--resume',
                         '--cfg-options'] + more)
    assert resumed.train_loop.epoch == 2
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        tool.main([DIGITS, '--resume', str(tmp_path / 'nope.pth')])


def test_missing_cifar_precheck_and_its_fix_works(tmp_path):
    """No CIFAR-10 on disk: one screen, exit 1, no traceback, no work dir;
    the command the message suggests (with the data put there) runs."""
    import re
    import subprocess
    import sys

    from data_utils import payloads
    tool = osp.join(REPO, 'tools', 'search.py')
    work = tmp_path / 'work'
    res = subprocess.run([sys.executable, tool, CIFAR, '--work-dir',
                          str(work)], capture_output=True, text=True,
                         cwd=str(tmp_path))
    err = res.stderr
    assert res.returncode == 1, err[-2000:]
    assert 'Traceback' not in err and not work.exists()
    assert 'cifar-10-batches-py/data_batch_1' in err
    assert len([line for line in err.splitlines() if line.strip()]) < 40
    fix = re.search(r'--cfg-options (.*)', err).group(1).split()
    assert sorted(k.split('=')[0] for k in fix) == sorted([
        'train_dataloader.dataset.data_root',
        'train_cfg.search_dataloader.dataset.data_root',
        'val_dataloader.dataset.data_root'])
    data = tmp_path / 'my_cifar'
    payloads.write_cifar_root(str(data), n=8)
    small = ['train_cfg.max_epochs=1', 'custom_hooks.0.plot=False'] + [
        f'{loader}.{key}'
        for loader in ('train_dataloader', 'train_cfg.search_dataloader',
                       'val_dataloader')
        for key in ('batch_size=4', 'num_batch_per_epoch=1')]
    res = subprocess.run(
        [sys.executable, tool, CIFAR, '--work-dir', str(work),
         '--cfg-options'] + [k.replace('PATH', str(data)) for k in fix] +
        small + ['model.order=1'], capture_output=True, text=True,
        cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'Searched genotype' in res.stdout
    assert (work / 'genotype.json').is_file()


@pytest.mark.parametrize('content, why', [
    ('{"channel_squeeze": [1, 2]', 'not valid JSON'),
    ('[1, 2, 3]', 'costs'),
])
def test_precheck_refuses_a_bad_costs_file_before_building(tmp_path, content,
                                                           why):
    """A cost-aware search (model.arch_cost) whose costs file is malformed
    stops in the pre-check, naming the file, before the runner exists."""
    from sase_mm.models.search.cost import CostFileError
    search = load_tool('search')
    bad = tmp_path / 'costs.json'
    bad.write_text(content)
    cfg = Config.fromfile(DIGITS)
    cfg.model.arch_cost = dict(file=str(bad), weight=1.0)
    with pytest.raises(CostFileError, match=why) as err:
        search.precheck(cfg)
    assert str(bad) in str(err.value)
    cfg.model.arch_cost = dict(file=str(tmp_path / 'missing.json'),
                               weight=1.0)
    with pytest.raises(FileNotFoundError, match='op_costs.py'):
        search.precheck(cfg)


def _searched_alphas(tool, work, seed):
    import json
    tool.main([DIGITS, '--work-dir', work, '--cfg-options'] + TINY +
              [f'randomness.seed={seed}'])
    with open(osp.join(work, 'genotype.json')) as f:
        return json.load(f)['alphas']


def test_same_seed_gives_identical_alphas(tmp_path):
    """Two demo searches with one seed on the CPU give bit-identical alphas
    (the file's floats, every digit); another seed gives others."""
    tool = load_tool('search')
    first = _searched_alphas(tool, str(tmp_path / 'a'), seed=0)
    second = _searched_alphas(tool, str(tmp_path / 'b'), seed=0)
    other = _searched_alphas(tool, str(tmp_path / 'c'), seed=1)
    assert first == second
    assert first != other
