"""The divergence guard of the search (SASE, arXiv 2411.08333): a NaN loss,
alpha gradient or alpha stops the search with a message, or skips the step
and stops after k consecutive skips; no genotype is written from NaN."""
import glob
import os

import pytest
import torch
from tiny_supernets import build_tiny, make_batch, make_optim

from sase_mm.models.search.guard import (DivergenceGuard, SearchDiverged,
                                         guarded_alpha_step)


def _data(poison=False):
    train, search = make_batch(seed=1), make_batch(seed=2)
    if poison:
        train['inputs'][0, 0, 0, 0] = float('nan')
    return dict(train=train, search=search)


def test_nan_stops_the_step_by_default():
    model = build_tiny(order=1)
    optim = make_optim(model)
    with pytest.raises(SearchDiverged, match='NaN'):
        model.train_step(_data(poison=True), optim)


def test_skip_step_keeps_values_then_stops():
    model = build_tiny(order=1, nan_policy='skip_step', max_nan_skips=2)
    optim = make_optim(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    poisoned = _data(poison=True)
    poisoned['search'] = poisoned['train']  # both steps see the NaN
    model.train_step(poisoned, optim)  # skipped: nothing changes
    for k, v in model.state_dict().items():  # BN statistics included
        assert torch.equal(v, before[k]), k
    assert torch.isfinite(model.alphas).all()
    model.train_step(_data(), optim)  # a good step resets the count
    model.train_step(poisoned, optim)
    with pytest.raises(SearchDiverged, match='2 consecutive'):
        model.train_step(poisoned, optim)


def test_alpha_made_non_finite_is_restored():
    guard = DivergenceGuard('skip_step', 3)
    alphas = torch.nn.Parameter(torch.ones(6, 7))
    guard.start_step()

    def step():
        with torch.no_grad():
            alphas.fill_(float('inf'))

    guarded_alpha_step(guard, alphas, step)
    assert torch.equal(alphas.detach(), torch.ones(6, 7))
    assert guard.skipped_this_step


def test_bad_policy_is_named():
    with pytest.raises(ValueError, match="'stop', 'skip_step'"):
        build_tiny(nan_policy='ignore')


def test_diverged_search_stops_with_iteration_and_writes_no_genotype(
        tmp_path):
    """A search with a huge learning rate: stopped with the iteration, the
    last good checkpoint and the fixes; no genotype from NaN alphas."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))), 'engine'))
    from mmengine.config import Config
    from mmengine.runner import Runner
    from tiny_search_cfg import tiny_search_cfg
    cfg = tiny_search_cfg(tmp_path, max_epochs=3, val=False)
    cfg['optim_wrapper']['weights']['optimizer']['lr'] = 1e12
    cfg['optim_wrapper']['weights'].pop('clip_grad')
    runner = Runner.from_cfg(Config(cfg))
    with pytest.raises(SearchDiverged) as info:
        runner.train()
    msg = str(info.value)
    assert 'diverged at iteration' in msg and 'lower the learning rate' in msg
    assert 'Last good checkpoint' in msg
    for path in glob.glob(str(tmp_path / 'genotype.json')):
        import json
        alphas = torch.tensor(json.load(open(path))['alphas'])
        assert torch.isfinite(alphas).all()  # an earlier, finite record
