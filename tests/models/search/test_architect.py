"""The DARTS architect's functions on their own (SASE, arXiv 2411.08333;
docs/spec.md section 3): each is pure (the model's parameters, buffers,
``.grad`` and the optimizer's state are untouched), the Hessian-vector
product is the mixed second derivative, and the pieces compose into the
model's alpha gradient."""
import pytest
import torch
import torch.nn.functional as F
from tiny_supernets import build_tiny, build_toy, make_batch, make_optim

from sase_mm.models.sase import mixing
from sase_mm.models.search import architect


def _snapshot(model, opt):
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    momentum = {id(p): s['momentum_buffer'].clone()
                for p, s in opt.state.items()}
    return state, momentum


def _set_up(build, order=2, device='cpu'):
    model = build(order=order, dtype=torch.float64, device=device)
    model.train()
    optim = make_optim(model, lr=0.5, momentum=0.9, wd=1e-2)
    # One real step: non-zero momentum buffers and moved BN statistics.
    model.weight_step(make_batch(dtype=torch.float64, seed=3, device=device),
                      optim['weights'])
    batches = dict(train=make_batch(dtype=torch.float64, seed=1,
                                    device=device),
                   search=make_batch(dtype=torch.float64, seed=2,
                                     device=device))
    return model, optim['weights'].optimizer, batches


def _direction(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device)
            for p in model.supernet.parameters()]


CALLS = {
    'alpha_gradient': lambda m, opt, b: architect.alpha_gradient(
        m, b['train'], b['search'], opt),
    'first_order_gradient': lambda m, opt, b: architect.first_order_gradient(
        m, b['search']),
    'second_order_gradient': lambda m, opt, b:
        architect.second_order_gradient(m, b['train'], b['search'], opt),
    'hessian_vector_product': lambda m, opt, b:
        architect.hessian_vector_product(m, b['train'], _direction(m), 0.01),
    'virtual_sgd_step': lambda m, opt, b: architect.virtual_sgd_step(
        list(m.supernet.parameters()), _direction(m), opt),
    'scratch_buffers': lambda m, opt, b: architect.scratch_buffers(m),
}


@pytest.mark.parametrize('build', [build_tiny, build_toy],
                         ids=['sase_supernet', 'toy'])
@pytest.mark.parametrize('name', sorted(CALLS))
def test_architect_functions_are_pure(name, build):
    model, opt, batches = _set_up(build)
    state, momentum = _snapshot(model, opt)
    out = CALLS[name](model, opt, batches)
    assert out is not None
    after, momentum_after = _snapshot(model, opt)
    assert after.keys() == state.keys()
    for k in state:  # bit-exact: parameters and BN buffers
        assert torch.equal(after[k], state[k]), k
    assert momentum_after.keys() == momentum.keys()
    assert all(torch.equal(momentum[k], momentum_after[k]) for k in momentum)
    assert all(p.grad is None for p in model.parameters())


def test_scratch_buffers_are_copies():
    model, _, batches = _set_up(build_tiny)
    scratch = architect.scratch_buffers(model)
    real = dict(model.supernet.named_buffers())
    assert scratch.keys() == real.keys() and scratch
    for name, buf in scratch.items():
        assert torch.equal(buf, real[name])
        assert buf.data_ptr() != real[name].data_ptr()
    # A training-mode pass on the scratch buffers moves them, not the real.
    before = {n: b.clone() for n, b in real.items()}
    model.batch_loss(batches['train'], model.mix().detach(), None, scratch)
    assert any(not torch.equal(scratch[n], before[n]) for n in before
               if n.endswith('running_mean'))
    assert all(torch.equal(b, before[n]) for n, b in real.items())


@pytest.mark.parametrize('radius', [1e-2, 1e-3])
def test_hessian_vector_product_is_the_mixed_second_derivative(radius,
                                                               device):
    """(grad_a L(w + eps u) - grad_a L(w - eps u)) / (2 eps) vs the exact
    d/d alpha (grad_w L . u) by double backward, float64, smooth toy (on
    CUDA too where present)."""
    model, _, batches = _set_up(build_toy, device=device)
    u = _direction(model)
    hvp = architect.hessian_vector_product(model, batches['train'], u,
                                           radius)
    params = list(model.supernet.parameters())
    buffers = architect.scratch_buffers(model)
    loss = model.batch_loss(batches['train'], model.mix(), None, buffers)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    (exact, ) = torch.autograd.grad(
        sum((g * t).sum() for g, t in zip(grads, u)), [model.alphas])
    assert hvp.shape == (6, 7)
    rel = (hvp - exact).norm() / exact.norm()
    assert rel < 1e-4, float(rel)


def test_hessian_vector_product_of_a_zero_direction_is_none():
    model, _, batches = _set_up(build_toy)
    zero = [torch.zeros_like(t) for t in _direction(model)]
    assert architect.hessian_vector_product(model, batches['train'], zero,
                                            0.01) is None


def test_second_order_with_lr_zero_is_first_order():
    """lr 0: w' = w and u = xi * v = 0, so the Hessian term is omitted and
    the second-order gradient is the first-order one."""
    model, opt, batches = _set_up(build_toy)
    for group in opt.param_groups:
        group['lr'] = 0.0
    second, loss2 = architect.second_order_gradient(
        model, batches['train'], batches['search'], opt)
    first, loss1 = architect.first_order_gradient(model, batches['search'])
    assert torch.allclose(second, first, atol=1e-12, rtol=0)
    assert torch.allclose(loss2, loss1, atol=1e-12, rtol=0)


@pytest.mark.parametrize('order', [1, 2])
def test_alpha_gradient_follows_the_model_order(order):
    model, opt, batches = _set_up(build_toy, order=order)
    grad, loss = architect.alpha_gradient(model, batches['train'],
                                          batches['search'], opt)
    expected = architect.first_order_gradient(model, batches['search']) \
        if order == 1 else architect.second_order_gradient(
            model, batches['train'], batches['search'], opt)
    assert torch.equal(grad, expected[0]) and torch.equal(loss, expected[1])
    # and the model's method is the architect's
    assert torch.equal(model.alpha_gradient(batches['train'],
                                            batches['search'], opt)[0], grad)


def test_first_order_gradient_is_grad_of_the_search_loss():
    model, _, batches = _set_up(build_toy, order=1)
    grad, loss = architect.first_order_gradient(model, batches['search'])
    search = batches['search']
    # Same BN behaviour: batch statistics on copies of the buffers.
    with mixing(model.alphas, model.alphas.softmax(-1)):
        logits = torch.func.functional_call(
            model.supernet, ({}, architect.scratch_buffers(model)),
            (search['inputs'], ))
    ref = F.cross_entropy(logits, search['data_samples'])
    (expected, ) = torch.autograd.grad(ref, [model.alphas])
    assert torch.allclose(grad, expected, atol=1e-12, rtol=0)
    assert torch.allclose(loss, ref.detach())
