"""Beta-Decay (beta-DARTS, Ye et al., CVPR 2022), an option beyond SASE
(arXiv 2411.08333; docs/search_options.md): the term, its gradient, its
linear schedule, and its place in the alpha step."""
import pytest
import torch
from tiny_supernets import build_tiny, make_batch, make_optim

from sase_mm.models.search.beta_decay import BetaDecay


def test_gradient_is_that_of_the_mean_logsumexp():
    alphas = torch.randn(6, 7, dtype=torch.float64, requires_grad=True)
    decay = BetaDecay(50.0)
    value, grad = decay.penalty(alphas, progress=0.3)
    lam = 50.0 * 0.3
    ref = lam * torch.logsumexp(alphas, dim=-1).mean()
    (ref_grad, ) = torch.autograd.grad(ref, [alphas])
    torch.testing.assert_close(value, ref.detach())
    torch.testing.assert_close(grad, ref_grad)
    assert grad.dtype == alphas.dtype


def test_schedule_grows_linearly_from_zero():
    decay = BetaDecay(50.0)
    assert decay.coefficient(0.0) == 0.0
    assert decay.coefficient(0.5) == 25.0
    assert decay.coefficient(1.0) == 50.0
    assert decay.coefficient(2.0) == 50.0  # clamped
    _, grad = decay.penalty(torch.randn(6, 7), 0.0)
    assert torch.count_nonzero(grad) == 0


def test_the_term_pulls_the_largest_alpha_down_most():
    alphas = torch.zeros(6, 7)
    alphas[:, 2] = 3.0
    _, grad = BetaDecay(1.0).penalty(alphas, 1.0)
    assert (grad.argmax(dim=1) == 2).all() and (grad > 0).all()


@pytest.mark.parametrize('bad', [-1.0, float('nan'), float('inf'), '1',
                                 True, None])
def test_bad_weight_is_refused(bad):
    with pytest.raises(ValueError, match='beta_decay.weight'):
        BetaDecay(bad)


@pytest.mark.parametrize('bad', [dict(), dict(weight=1, warmup=2), [1]])
def test_bad_config_is_refused(bad):
    with pytest.raises(ValueError, match=r'dict\(weight=\.\.\.\)'):
        BetaDecay.build(bad)


@pytest.mark.parametrize('order', [1, 2])
def test_alpha_step_adds_exactly_the_term(order):
    """The same step with and without the term: the alpha gradients differ
    by exactly the term's gradient."""
    batches = dict(train=make_batch(seed=1), search=make_batch(seed=2))
    grads = {}
    for decay in (None, dict(weight=8.0)):
        model = build_tiny(order=order, beta_decay=decay).train()
        model.search_progress = 0.5
        optim = make_optim(model)
        seen = []
        apply = model._apply_alpha_gradient
        model._apply_alpha_gradient = \
            lambda g, opt: (seen.append(g.clone()), apply(g, opt))
        out = model.train_step(batches, optim)
        grads[decay is None] = seen[0]
        if decay is not None:
            assert out['beta_decay'] > 0
        else:
            assert 'beta_decay' not in out
    _, expected = BetaDecay(8.0).penalty(
        build_tiny(order=order).alphas, 0.5)
    torch.testing.assert_close(grads[False] - grads[True], expected)
