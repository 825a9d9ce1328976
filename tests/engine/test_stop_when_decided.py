"""GenotypeHook(stop_when_decided=N), an option beyond SASE (arXiv
2411.08333; docs/search_options.md): the search stops once every edge has
been decided with the same genotype for N consecutive epochs, validates its
last epoch, and otherwise runs every epoch."""
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from tiny_search_cfg import tiny_search_cfg

from sase_mm.engine import GenotypeHook


class _SetAlphas(Hook):
    """Puts alpha at a given value before the search starts."""

    def __init__(self, value):
        self.value = value

    def before_train(self, runner):
        with torch.no_grad():
            runner.model.alphas.copy_(self.value)


def _run(tmp_path, alphas, patience, max_epochs=5):
    cfg = tiny_search_cfg(tmp_path, order=1, max_epochs=max_epochs)
    cfg['custom_hooks'] = [dict(type='sase_mm.GenotypeHook', plot=False,
                                stop_when_decided=patience)]
    cfg['optim_wrapper']['alphas']['optimizer']['lr'] = 1e-4
    runner = Runner.from_cfg(Config(cfg))
    runner.register_hook(_SetAlphas(alphas))
    runner.train()
    return runner


def test_a_decided_search_stops_and_validates(tmp_path):
    decided = torch.zeros(6, 7)
    decided[:, 3] = 5.0  # margins ~0.9, far above 0.02
    runner = _run(tmp_path, decided, patience=2)
    assert runner.epoch == 2  # stopped after the second epoch of five
    assert os.path.exists(tmp_path / 'epoch_2.pth')
    assert not os.path.exists(tmp_path / 'epoch_3.pth')
    # val_interval is max_epochs: only the stop made it validate.
    assert 'val/accuracy/top1' in runner.message_hub.log_scalars
    assert list(runner.model.genotype().indices()) == [3] * 6


def test_an_undecided_search_runs_every_epoch(tmp_path):
    runner = _run(tmp_path, torch.zeros(6, 7), patience=1, max_epochs=3)
    assert runner.epoch == 3


def _hook_with(history, patience=2):
    hook = GenotypeHook(stop_when_decided=patience)
    hook.history = history
    return hook


def _probs(best, margin):
    p = torch.full((6, 7), (1 - 0.4 - margin) / 5)
    p[:, best] = 0.4 + margin
    p[:, (best + 1) % 7] = 0.4
    return p.tolist()


def test_streak_counts_back_from_the_last_epoch():
    assert _hook_with([]).decided_streak() == 0
    assert _hook_with([[1, _probs(0, 0.1)], [2, _probs(0, 0.1)],
                       [3, _probs(0, 0.1)]]).decided_streak() == 3
    # the genotype changed at epoch 2: the streak starts there
    assert _hook_with([[1, _probs(1, 0.1)], [2, _probs(0, 0.1)],
                       [3, _probs(0, 0.1)]]).decided_streak() == 2
    # an undecided last epoch: no streak
    assert _hook_with([[1, _probs(0, 0.1)],
                       [2, _probs(0, 0.001)]]).decided_streak() == 0


@pytest.mark.parametrize('kwargs,match', [
    (dict(stop_when_decided=-1), 'int >= 0'),
    (dict(stop_when_decided=1.5), 'int >= 0'),
    (dict(stop_when_decided=True), 'int >= 0'),
    (dict(stop_when_decided=2, interval=2), 'interval=1'),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GenotypeHook(**kwargs)
