"""DARTSLoop + DARTSOptimWrapperConstructor + GenotypeHook on a Runner
built from a dict (SASE, arXiv 2411.08333; docs/spec.md section 3): both
parameter sets move, the genotype files are written and agree with
argmax(alpha), the alpha lr stays constant, and a stopped search resumes
exactly."""
import copy
import glob
import json
import os

import pytest
import torch
from tiny_search_cfg import tiny_search_cfg
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict
from mmengine.runner import Runner

from sase_mm.engine import DARTSLoop, GenotypeHook
from sase_mm.models.sase import Genotype

from sase_mm.utils import load_checkpoint


def _runner(cfg):
    return Runner.from_cfg(Config(cfg))


def test_search_runs_and_records_genotype(tmp_path):
    runner = _runner(tiny_search_cfg(tmp_path, order=2))
    model = runner.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    runner.train()

    assert isinstance(runner.train_loop, DARTSLoop)
    assert isinstance(runner.optim_wrapper, OptimWrapperDict)
    assert not torch.equal(model.alphas, before['alphas'])
    moved = [k for k, v in model.supernet.state_dict().items()
             if v.is_floating_point()
             and not torch.equal(v, before[f'supernet.{k}'])]
    assert 'conv1.weight' in moved and 'fc.weight' in moved

    # weights annealed, alpha lr constant
    assert runner.optim_wrapper['alphas'].param_groups[0]['lr'] == 0.01
    assert runner.optim_wrapper['weights'].param_groups[0]['lr'] < 0.05

    genotype = Genotype.from_alphas(model.alphas)
    hook = next(h for h in runner.hooks if isinstance(h, GenotypeHook))
    paths = hook.paths(runner)
    for path in paths.values():
        assert os.path.isfile(path) and os.path.getsize(path) > 0, path
    assert not glob.glob(str(tmp_path / '*.tmp'))
    assert Genotype.load(paths['json']) == genotype
    assert Genotype.load(paths['config']) == genotype
    saved = json.load(open(paths['json']))
    assert saved['epoch'] == 2
    assert torch.allclose(torch.tensor(saved['softmax_alphas']),
                          model.alphas.detach().softmax(-1), atol=1e-6)
    history = json.load(open(paths['history_json']))
    assert history['epochs'] == [1, 2]
    with open(paths['heatmap'], 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'

    logs = open(glob.glob(os.path.join(runner.log_dir, '*.log'))[0]).read()
    assert f'Epoch 2 genotype: {genotype}' in logs
    assert f'Search finished. Genotype: {genotype}' in logs
    scalars = glob.glob(os.path.join(runner.log_dir, 'vis_data',
                                     'scalars.json'))[0]
    first = json.loads(open(scalars).readline())
    assert 'alpha/channel_squeeze/gap' in open(scalars).read(), first
    assert 'val/accuracy/top1' in runner.message_hub.log_scalars


def test_scheduler_list_would_anneal_alpha_lr(tmp_path):
    cfg = tiny_search_cfg(tmp_path, val=False)
    cfg['param_scheduler'] = [dict(type='CosineAnnealingLR', T_max=2,
                                   by_epoch=True)]
    with pytest.raises(ValueError, match='alpha learning rate'):
        _runner(cfg).train()


def test_plain_loop_or_optimizer_is_refused(tmp_path):
    cfg = tiny_search_cfg(tmp_path, val=False)
    cfg['optim_wrapper'] = dict(optimizer=dict(type='SGD', lr=0.1))
    cfg['param_scheduler'] = None
    with pytest.raises(TypeError, match='two optimizers'):
        _runner(cfg).train()


class _StopAfterEpoch(Hook):
    """Simulates a search killed right after epoch ``k`` was saved."""
    priority = 'LOWEST'  # after CheckpointHook

    def __init__(self, k):
        self.k = k

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.k:
            raise KeyboardInterrupt('stopped')


def _final(work_dir):
    # torch's safe default loader (weights_only=True).
    return load_checkpoint(os.path.join(work_dir, 'epoch_2.pth'))


def test_resume_equals_uninterrupted(tmp_path):
    full_dir, cut_dir = tmp_path / 'full', tmp_path / 'cut'
    _runner(tiny_search_cfg(full_dir, val=False)).train()

    cfg = tiny_search_cfg(cut_dir, val=False)
    stopped = _runner(copy.deepcopy(cfg))
    stopped.register_hook(_StopAfterEpoch(1))
    with pytest.raises(KeyboardInterrupt):
        stopped.train()
    assert os.path.isfile(cut_dir / 'epoch_1.pth')
    assert not os.path.isfile(cut_dir / 'epoch_2.pth')
    resumed = copy.deepcopy(cfg)
    resumed['resume'] = True
    _runner(resumed).train()

    full, cut = _final(full_dir), _final(cut_dir)
    assert full['meta']['epoch'] == cut['meta']['epoch'] == 2
    assert full['state_dict'].keys() == cut['state_dict'].keys()
    for k, v in full['state_dict'].items():
        assert torch.allclose(v.double(), cut['state_dict'][k].double(),
                              atol=1e-6), k
    for name in ('weights', 'alphas'):
        a, b = full['optimizer'][name], cut['optimizer'][name]
        assert a['param_groups'][0]['lr'] == b['param_groups'][0]['lr']
        assert a['state'].keys() == b['state'].keys() and a['state']
        for i in a['state']:
            for key, t in a['state'][i].items():
                assert torch.allclose(torch.as_tensor(t).double(),
                                      torch.as_tensor(
                                          b['state'][i][key]).double(),
                                      atol=1e-6), (name, i, key)
    assert len(cut['meta']['alpha_history']) == 2  # the hook resumed too
