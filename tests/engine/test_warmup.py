"""DARTSLoop(warmup_epochs=k), an option beyond SASE (arXiv 2411.08333;
docs/search_options.md): the first k epochs run weight steps only, alpha
and its optimizer untouched bit for bit, also when the search is stopped
and resumed inside the warm-up; then the search proper moves alpha."""
import copy
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from test_darts_loop import _StopAfterEpoch  # a search stopped after k
from tiny_search_cfg import tiny_search_cfg

from sase_mm.engine import DARTSLoop
from sase_mm.utils import load_checkpoint


@pytest.mark.parametrize('bad', [-1, 3, 4, 1.0, True, '1', None])
def test_bad_warmup_is_refused(bad):
    # Checked before the runner is used: nothing else needed.
    with pytest.raises(ValueError, match=r'warmup_epochs must be an int in '
                       r'\[0, max_epochs=3\)'):
        DARTSLoop(None, None, None, max_epochs=3, warmup_epochs=bad)


class _AlphaFlags(Hook):
    """Records, per iteration, whether the model was frozen and what it
    logged."""

    def __init__(self):
        self.seen = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.seen.append((runner.epoch, runner.model.freeze_alphas,
                          sorted(outputs)))


def _cfg(work_dir):
    cfg = tiny_search_cfg(work_dir, order=1, max_epochs=3, val=False)
    cfg['train_cfg']['warmup_epochs'] = 2
    return cfg


def test_warmup_freezes_alpha_across_a_resume(tmp_path):
    cfg = _cfg(tmp_path)
    runner = Runner.from_cfg(Config(copy.deepcopy(cfg)))
    alpha0 = runner.model.alphas.detach().clone()
    conv0 = runner.model.supernet.conv1.weight.detach().clone()
    runner.register_hook(_StopAfterEpoch(1))
    flags = _AlphaFlags()
    runner.register_hook(flags)
    with pytest.raises(KeyboardInterrupt):
        runner.train()

    resumed = copy.deepcopy(cfg)
    resumed['resume'] = True  # from epoch_1.pth: inside the warm-up
    runner = Runner.from_cfg(Config(resumed))
    runner.register_hook(flags)
    runner.train()

    ckpts = [load_checkpoint(os.path.join(tmp_path, f'epoch_{e}.pth'))
             for e in (1, 2, 3)]
    for e, ckpt in zip((1, 2), ckpts):
        assert torch.equal(ckpt['state_dict']['alphas'], alpha0), e
        assert ckpt['optimizer']['alphas']['state'] == {}, e  # Adam idle
    # The weights trained during the warm-up ...
    assert not torch.equal(ckpts[0]['state_dict']['supernet.conv1.weight'],
                           conv0)
    # ... and the search proper moved alpha.
    assert not torch.equal(ckpts[2]['state_dict']['alphas'], alpha0)
    assert ckpts[2]['optimizer']['alphas']['state']

    # Two iterations per epoch: frozen, with no search loss, in epochs 0, 1.
    assert [(e, f) for e, f, _ in flags.seen] == [
        (0, True), (0, True), (1, True), (1, True), (2, False), (2, False)]
    assert all('loss_search' not in keys for e, _, keys in flags.seen
               if e < 2)
    assert all('loss_search' in keys for e, _, keys in flags.seen if e == 2)


def test_warmup_needs_a_model_that_honours_it(tmp_path):
    cfg = _cfg(tmp_path)
    runner = Runner.from_cfg(Config(cfg))
    loop = runner.train_loop
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    loop.check_set_up()  # DARTSSearch honours it
    model = runner.model

    class NoFlag(torch.nn.Module):
        search_model = True

        @property
        def arch_alphas(self):
            return model.alphas

    # A search model without the flag would ignore the warm-up silently.
    runner.model = NoFlag()
    with pytest.raises(TypeError, match='freeze_alphas'):
        loop.check_set_up()
