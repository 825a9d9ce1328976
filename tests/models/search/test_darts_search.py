"""The DARTS search step of SASE (arXiv 2411.08333; docs/spec.md section 3):
second- and first-order alpha gradients, gradient hygiene, BatchNorm
statistics, and the known mmrazor traps."""
import copy

import pytest
import torch
import torch.nn.functional as F
from tiny_supernets import build_tiny, build_toy, make_batch, make_optim
from torch.func import functional_call

from sase_mm.models.sase import mixing
from sase_mm.models.search import virtual_sgd_step


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].double(), b[k].double(), atol=atol,
                              rtol=0), k


def _warm_momentum(model, optim, batch):
    """One real weight step so the SGD momentum buffers are non-zero."""
    model.weight_step(batch, optim['weights'])
    state = optim['weights'].optimizer.state
    assert all('momentum_buffer' in state[p]
               for p in model.supernet.parameters())
    # (single-unit ReLUs of tiny attention ops may be dead: zero buffers)
    first = next(model.supernet.parameters())  # the stem conv
    assert state[first]['momentum_buffer'].abs().sum() > 0


def test_single_alpha_owner():
    model = build_tiny()
    keys = [k for k in model.state_dict() if 'alpha' in k]
    assert keys == ['alphas']
    blocks = [m for m in model.modules()
              if type(m).__name__ == 'SASESearch']
    assert len(blocks) == 3
    assert all(b.arch_alphas is model.alphas for b in blocks)
    assert not any(p is model.alphas for p in model.weight_parameters())


def _unrolled_objective(model, train, search, opt, create_graph):
    """L_val(w'(alpha), alpha) with w' one SGD step (momentum, weight
    decay) on the train batch; BN statistics untouched (scratch copies)."""
    names, params = zip(*model.supernet.named_parameters())
    buffers = {n: b.clone() for n, b in model.supernet.named_buffers()}

    def loss(p, batch):
        with mixing(model.alphas, model.alphas.softmax(-1)):
            logits = functional_call(model.supernet, (dict(zip(names, p)),
                                                      buffers),
                                     (batch['inputs'], ))
        return F.cross_entropy(logits, batch['data_samples'])

    g = torch.autograd.grad(loss(params, train), params,
                            create_graph=create_graph)
    group = opt.param_groups[0]
    lr, mu, wd = group['lr'], group['momentum'], group['weight_decay']
    virtual = [p - lr * (mu * opt.state[p]['momentum_buffer'] + gi + wd * p)
               for p, gi in zip(params, g)]
    return loss(virtual, search), loss([v.detach() for v in virtual], search)


def _set_up(build, device='cpu', **kwargs):
    model = build(order=2, dtype=torch.float64, device=device, **kwargs)
    model.train()
    train = make_batch(dtype=torch.float64, seed=1, device=device)
    search = make_batch(dtype=torch.float64, seed=2, device=device)
    optim = make_optim(model, lr=0.5, momentum=0.9, wd=1e-2)
    _warm_momentum(model, optim, make_batch(dtype=torch.float64, seed=3,
                                            device=device))
    return model, train, search, optim['weights'].optimizer


def test_second_order_matches_exact_unrolled_gradient(device):
    """DARTS's finite-difference gradient (default eps = 0.01 / ||v||) vs the
    exact unrolled gradient by double backward through one SGD step with
    momentum and weight decay, float64, on a smooth toy supernet (the
    hypergradient test; on CUDA too where present)."""
    model, train, search, opt = _set_up(build_toy, device)
    grad, _ = model.alpha_gradient(train, search, opt)
    unrolled, at_virtual = _unrolled_objective(model, train, search, opt,
                                               create_graph=True)
    (exact, ) = torch.autograd.grad(unrolled, [model.alphas])
    cos = F.cosine_similarity(grad.flatten(), exact.flatten(), dim=0)
    rel = (grad - exact).norm() / exact.norm()
    assert cos > 0.999, float(cos)
    assert rel < 1e-2, float(rel)
    # The Hessian term matters: the first-order term alone is far off.
    (first, ) = torch.autograd.grad(at_virtual, [model.alphas])
    assert (first - exact).norm() / exact.norm() > 10 * rel


def test_second_order_on_sase_supernet_matches_directional_derivative(
        device):
    """The same on the real SASE supernet (CIFAR ResNet + SASESearch), with
    the unrolled objective differentiated by central differences along
    random alpha directions (its operations use once-differentiable autograd
    functions, so double backward is not available). Radius 1e-6 (float64):
    on this 8-channel toy a step of 1e-3 or more in weight space often
    crosses a ReLU / max kink, where the gradient in alpha jumps and the
    finite difference is meaningless (which seeds pass then is luck)."""
    model, train, search, opt = _set_up(build_tiny, device, fd_radius=1e-6)
    grad, _ = model.alpha_gradient(train, search, opt)
    alpha0 = model.alphas.detach().clone()
    g = torch.Generator().manual_seed(0)
    h = 1e-5
    for _ in range(3):
        d = torch.randn(alpha0.shape, generator=g,
                        dtype=alpha0.dtype).to(device)
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                model.alphas.copy_(alpha0 + sign * h * d)
            values.append(_unrolled_objective(model, train, search, opt,
                                              create_graph=False)[1])
        fd = (values[0] - values[1]) / (2 * h)
        assert torch.isclose((grad * d).sum(), fd, rtol=1e-3), (
            float((grad * d).sum()), float(fd))
    with torch.no_grad():
        model.alphas.copy_(alpha0)


def test_first_order_is_grad_of_search_loss(batches):
    model = build_tiny(order=1)
    optim = make_optim(model)
    grad, loss_s = model.alpha_gradient(batches['train'], batches['search'],
                                        optim['weights'].optimizer)
    with mixing(model.alphas, model.alphas.softmax(-1)):
        logits = model.supernet(batches['search']['inputs'])
    ref_loss = F.cross_entropy(logits, batches['search']['data_samples'])
    (ref, ) = torch.autograd.grad(ref_loss, [model.alphas])
    assert torch.allclose(grad, ref, atol=1e-6)
    assert torch.allclose(loss_s, ref_loss.detach())


def test_virtual_step_is_used_and_real_weights_untouched(batches):
    """Guards against mmrazor's rebinding bug (the virtual step never
    reaches the forward) and against in-place changes left behind."""
    model = build_tiny(order=2)
    model.train()
    optim = make_optim(model, lr=0.5)
    _warm_momentum(model, optim, make_batch(seed=3))
    before = _state(model)
    opt = optim['weights'].optimizer
    _, loss_s = model.alpha_gradient(batches['train'], batches['search'],
                                     opt)
    _assert_same_state(before, _state(model))
    assert all(p.grad is None for p in model.parameters())

    names, params = zip(*model.supernet.named_parameters())
    buffers = {n: b.clone() for n, b in model.supernet.named_buffers()}
    mix = model.alphas.softmax(-1).detach()

    def logits_at(p, batch):
        with mixing(model.alphas, mix):
            return functional_call(model.supernet, (dict(zip(names, p)),
                                                    buffers),
                                   (batch['inputs'], ))

    def loss(p, batch):
        return F.cross_entropy(logits_at(p, batch),
                               batch['data_samples']).detach()

    train = batches['train']
    g = torch.autograd.grad(F.cross_entropy(logits_at(params, train),
                                            train['data_samples']), params)
    virtual, _ = virtual_sgd_step(params, g, opt)
    assert any(not torch.equal(v, p) for v, p in zip(virtual, params))
    assert torch.allclose(loss_s, loss(virtual, batches['search']),
                          atol=1e-6)
    assert not torch.allclose(loss_s, loss(params, batches['search']),
                              atol=1e-4)


@pytest.mark.parametrize('order', [1, 2])
def test_weight_step_after_alpha_step_equals_plain_weight_step(order,
                                                               batches):
    """Same alpha, same weights, same momentum, same BN statistics: the
    alpha step leaks nothing into the weight step (mmrazor's validation
    gradients leaked), and only the weight step's forward updates BN."""
    model = build_tiny(order=order)
    model.train()
    optim = make_optim(model, lr=0.1, clip=5)
    _warm_momentum(model, optim, make_batch(seed=3))
    twin = copy.deepcopy(model)
    twin_optim = make_optim(twin, lr=0.1, clip=5)
    # deepcopy: load_state_dict would share the momentum tensors.
    twin_optim.load_state_dict(copy.deepcopy(optim.state_dict()))
    alpha0 = model.alphas.detach().clone()

    out = model.train_step(batches, optim)
    assert set(out) == {'loss', 'loss_search'}
    assert not torch.equal(model.alphas, alpha0)  # the alpha step happened

    with torch.no_grad():
        twin.alphas.copy_(model.alphas)
    twin.weight_step(batches['train'], twin_optim['weights'])
    _assert_same_state(_state(model), _state(twin), atol=1e-6)
    sd, tsd = (optim['weights'].optimizer.state_dict()['state'],
               twin_optim['weights'].optimizer.state_dict()['state'])
    for k in sd:
        assert torch.allclose(sd[k]['momentum_buffer'],
                              tsd[k]['momentum_buffer'], atol=1e-6)


def test_weight_step_gradient_is_train_loss_gradient(batches):
    model = build_tiny(order=2)
    optim = make_optim(model, lr=0.0, momentum=0.0, wd=0.0)
    grads = {}
    orig_step = optim['weights'].step

    def spy_step(**kw):
        grads.update({id(p): p.grad.clone()
                      for p in model.supernet.parameters()})
        assert model.alphas.grad is None  # never reaches alpha
        return orig_step(**kw)

    optim['weights'].step = spy_step
    model.train()
    ref_model = copy.deepcopy(model)
    model.train_step(batches, optim)
    # lr 0: the weights did not move; compare with the train loss alone at
    # the new alpha, BN as in the weight step.
    with torch.no_grad():
        ref_model.alphas.copy_(model.alphas)
    with mixing(ref_model.alphas, ref_model.alphas.softmax(-1).detach()):
        logits = ref_model.supernet(batches['train']['inputs'])
    F.cross_entropy(logits, batches['train']['data_samples']).backward()
    for p, q in zip(model.supernet.parameters(),
                    ref_model.supernet.parameters()):
        assert torch.allclose(grads[id(p)], q.grad, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_alpha_step_leaves_no_weight_grads(batches):
    model = build_tiny(order=2)
    optim = make_optim(model)
    grad, _ = model.alpha_gradient(batches['train'], batches['search'],
                                   optim['weights'].optimizer)
    assert grad.shape == model.alphas.shape and grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_bad_set_up_errors(batches):
    model = build_tiny(order=2)
    optim = make_optim(model)
    with pytest.raises(TypeError, match='train=batch, search=batch'):
        model.train_step(batches['train'], optim)
    with pytest.raises(TypeError, match='OptimWrapperDict'):
        model.train_step(batches, optim['weights'])
    adam = make_optim(model)
    adam['weights'].optimizer = torch.optim.Adam(model.supernet.parameters())
    with pytest.raises(ValueError, match='SGD or order=1'):
        model.train_step(batches, adam)
    with pytest.raises(ValueError, match='order must be 1'):
        build_tiny(order=3)


def test_finite_difference_radius(batches, monkeypatch):
    """w+- = w +- eps * v with eps = 0.01 / ||v||, scaled by the lr:
    the perturbation of the weights has norm 0.01 (default radius)."""
    model = build_tiny(order=2)
    assert model.fd_radius == 0.01
    optim = make_optim(model, lr=0.3)
    calls = []
    orig = type(model).batch_loss

    def spy(self, batch, mix, params=None, buffers=None):
        calls.append(params)
        return orig(self, batch, mix, params, buffers)

    monkeypatch.setattr(type(model), 'batch_loss', spy)
    model.alpha_gradient(batches['train'], batches['search'],
                         optim['weights'].optimizer)
    # virtual-step train pass, search pass at w', then w + and w -.
    assert len(calls) == 4 and calls[0] is None
    real = dict(model.supernet.named_parameters())
    plus, minus = calls[2], calls[3]
    dist_plus = torch.sqrt(sum(((plus[n] - p)**2).sum()
                               for n, p in real.items()))
    assert torch.isclose(dist_plus, torch.tensor(0.01), rtol=1e-3)
    for n, p in real.items():  # symmetric around w
        assert torch.allclose(plus[n] + minus[n], 2 * p, atol=1e-6)


@pytest.mark.parametrize('attn_cfg', [None, dict(type='sase_mm.SASE')],
                         ids=['plain', 'fixed_block'])
def test_supernet_must_read_the_search_models_alpha(attn_cfg):
    from sase_mm.registry import MODELS
    with pytest.raises(ValueError, match='does not read the search model'):
        MODELS.build(dict(type='sase_mm.DARTSSearch', supernet=dict(
            type='sase_mm.CifarResNet', depth=8, base_channels=8,
            input_size=8, attn_cfg=attn_cfg)))


@pytest.mark.parametrize('order', [1, 2])
def test_amp_forwards_run_in_autocast_and_backwards_outside(order, batches,
                                                            monkeypatch):
    """Under AMP (the weight wrapper's optim_context: CPU bfloat16 autocast)
    every forward pass of the step runs in autocast except the float32
    finite differences, and no gradient is taken inside it (as mmengine's
    train_step: autocast around the forward only)."""
    from mmengine.optim import OptimWrapperDict

    from sase_mm.engine import CPUAmpOptimWrapper
    model = build_tiny(order=order).train()
    plain = make_optim(model)
    optim = OptimWrapperDict(
        weights=CPUAmpOptimWrapper(optimizer=plain['weights'].optimizer),
        alphas=plain['alphas'])
    forwards, backwards = [], []
    loss_of = model.batch_loss

    def batch_loss(*a, **k):
        forwards.append(torch.is_autocast_enabled('cpu'))
        return loss_of(*a, **k)

    grad, backward = torch.autograd.grad, torch.Tensor.backward

    def grad_spy(*a, **k):
        backwards.append(torch.is_autocast_enabled('cpu'))
        return grad(*a, **k)

    def backward_spy(self, *a, **k):
        backwards.append(torch.is_autocast_enabled('cpu'))
        return backward(self, *a, **k)

    monkeypatch.setattr(model, 'batch_loss', batch_loss)
    monkeypatch.setattr(torch.autograd, 'grad', grad_spy)
    monkeypatch.setattr(torch.Tensor, 'backward', backward_spy)
    model.train_step(batches, optim)
    # order 1: search pass, weight step; order 2: virtual step, search pass
    # at w', the two finite-difference passes (float32), weight step
    assert forwards == ([True, True] if order == 1 else
                        [True, True, False, False, True])
    assert backwards and not any(backwards)
    assert torch.isfinite(model.alphas).all()
