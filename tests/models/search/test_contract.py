"""The two-optimizer contract of the DARTS search (SASE, arXiv 2411.08333;
docs/spec.md section 3), checked by one function: the loop (before the first
epoch) and the model (``train_step``) reject the same bad set-ups with the
same message, and the constructor builds exactly what it accepts."""
import types

import pytest
import torch
from mmengine.optim import OptimWrapper, OptimWrapperDict
from tiny_supernets import build_tiny, make_optim

from sase_mm.engine import DARTSLoop, DARTSOptimWrapperConstructor
from sase_mm.models.search import (OPTIMIZER_KEYS, check_search_optimizers)


def _sgd(params):
    return OptimWrapper(torch.optim.SGD(params, lr=0.1))


def _adam(params):
    return OptimWrapper(torch.optim.Adam(params, lr=0.01))


def _weights(model):
    return list(model.supernet.parameters())


BAD = {
    'one_optimizer': (TypeError, lambda m: _sgd(m.parameters())),
    'missing_alphas': (TypeError, lambda m: OptimWrapperDict(
        weights=_sgd(_weights(m)))),
    'extra_key': (TypeError, lambda m: OptimWrapperDict(
        weights=_sgd(_weights(m)), alphas=_adam([m.alphas]),
        extra=_sgd([torch.nn.Parameter(torch.zeros(1))]))),
    'alpha_in_weights': (ValueError, lambda m: OptimWrapperDict(
        weights=_sgd(list(m.parameters())), alphas=_adam([m.alphas]))),
    'weights_in_alphas': (ValueError, lambda m: OptimWrapperDict(
        weights=_sgd(_weights(m)),
        alphas=_adam([m.alphas] + _weights(m)[:1]))),
    'alpha_not_optimised': (ValueError, lambda m: OptimWrapperDict(
        weights=_sgd(_weights(m)),
        alphas=_adam([torch.nn.Parameter(torch.zeros(6, 7))]))),
}


def _loop_check(model, optim_wrapper, schedulers=None, allow=False):
    """DARTSLoop.check_set_up on a stand-in for the runner."""
    loop = types.SimpleNamespace(
        runner=types.SimpleNamespace(model=model, optim_wrapper=optim_wrapper,
                                     param_schedulers=schedulers),
        allow_alpha_lr_schedule=allow, warmup_epochs=0)
    DARTSLoop.check_set_up(loop)


@pytest.mark.parametrize('name', sorted(BAD))
def test_loop_and_model_reject_the_same_set_ups_alike(name, batches):
    error, make = BAD[name]
    model = build_tiny(order=1)
    alpha0 = model.alphas.detach().clone()
    bad = make(model)
    with pytest.raises(error) as by_model:
        model.train_step(batches, bad)
    with pytest.raises(error) as by_loop:
        _loop_check(model, bad)
    assert str(by_model.value) == str(by_loop.value)
    assert torch.equal(model.alphas, alpha0)  # rejected before any step
    if error is TypeError:  # the message names the fix
        assert 'two optimizers' in str(by_model.value)
        assert 'DARTSOptimWrapperConstructor' in str(by_model.value)


def test_the_constructor_builds_what_the_contract_accepts(batches):
    model = build_tiny(order=1)
    cfg = dict(weights=dict(optimizer=dict(type='SGD', lr=0.1)),
               alphas=dict(optimizer=dict(type='Adam', lr=0.01)))
    optim = DARTSOptimWrapperConstructor(cfg)(model)
    assert tuple(optim.keys()) == OPTIMIZER_KEYS == ('weights', 'alphas')
    w_opt, a_opt = check_search_optimizers(model, optim)
    assert (w_opt, a_opt) == (optim['weights'], optim['alphas'])
    _loop_check(model, optim)
    out = model.train_step(batches, optim)
    assert set(out) == {'loss', 'loss_search'}
    with pytest.raises(ValueError, match="missing \\['alphas'\\]"):
        DARTSOptimWrapperConstructor(dict(weights=cfg['weights']))


@pytest.mark.parametrize('allow', [False, True])
def test_alpha_lr_schedule_is_refused_unless_allowed(allow):
    model = build_tiny(order=1)
    optim = make_optim(model)
    lr = types.SimpleNamespace(param_name='lr')
    schedulers = dict(weights=[lr], alphas=[lr])
    if allow:
        _loop_check(model, optim, schedulers, allow=True)
    else:
        with pytest.raises(ValueError, match='alpha learning rate'):
            _loop_check(model, optim, schedulers)
    _loop_check(model, optim, dict(weights=[lr], alphas=[]))  # keyed: fine


def test_a_model_that_is_not_a_search_model_is_refused():
    plain = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match='not a search model'):
        _loop_check(plain, OptimWrapperDict(weights=_sgd(plain.parameters()),
                                            alphas=_adam(plain.parameters())))
