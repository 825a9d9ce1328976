"""Half-precision models: ``.half()`` and ``.to(torch.bfloat16)``.

SASE (arXiv 2411.08333) and the attention zoo it is compared with take
their statistics in float32 (``layers/precision.py``): in a float16 or
bfloat16 model each attention module runs on float32 casts of its input,
parameters and buffers and returns its input's dtype; the backbones'
convolutions and BNs run in the half dtype, as torch's layers do. Each
case compares the half model with the float32 model on the same (rounded)
weights and input, in training and in eval mode, forward and backward, on
the CPU and (``device`` fixture, ids ``cuda``) on a GPU.

Tolerances, per dtype, from the unit roundoff u (half the spacing of the
numbers near 1): float16 keeps 11 significant bits, u = 2^-11 (4.9e-4);
bfloat16 keeps 8, u = 2^-8 (3.9e-3).

* An attention module computes everything in float32 and rounds its output
  (and, in the backward pass, each gradient) once, to the half dtype: each
  element is within u of the float32 value, relatively, plus an absolute
  1e-4 of the tensor's largest element for what float32 itself rounds
  differently (the float32 SASE block trains through its fused node, the
  half one through the generic graph; sums in another order), and one
  subnormal step of the dtype where a gradient underflows (float16:
  2^-24, e.g. the gradient of a conv bias before a training-mode BN,
  zero but for float32 rounding).
* A backbone chains L layers that each round their output in the half
  dtype (convolutions, BNs, the attention modules, the residual sums): to
  first order the relative error of a chain of L rounded operations is at
  most L u. Its gradients pass backward through the same half-precision
  layers (training-mode BN subtracts near-equal sums there), so they are
  checked for being finite, present and in the parameter dtype, and the
  gradients of the attention modules for their values, here above.
"""
import copy
import math

import pytest
import torch
import torch.nn as nn

from sase_mm.models.attention_zoo import ZOO
from sase_mm.models.backbones import CifarResNet, SASEResNet
from sase_mm.models.sase import (SASE, SASESearch, current_mix, init_alphas,
                                 mixing)
from sase_mm.models.sase.fast import fused
from sase_mm.models.sase.fast.fused import node as fused_node
from sase_mm.registry import MODELS

DTYPES = [pytest.param(torch.float16, id='float16'),
          pytest.param(torch.bfloat16, id='bfloat16')]
MODES = [pytest.param(True, id='train'), pytest.param(False, id='eval')]
UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
C, SIZE = 16, 6

#: The attention modules, built in float32 for (2, C, SIZE, SIZE) inputs.
ATTENTION = {
    'SASE': lambda: SASE(C),
    'SASESearch': lambda: SASESearch(C, spatial_size=SIZE),
    **{name: (lambda name=name: MODELS.build(
        dict(type=f'sase_mm.{name}', in_channels=C))) for name in ZOO},
}

#: Activations of at most 1e3 (a float16 square overflows above 256, a
#: fourth power above 16), except where float16 cannot hold the float32
#: module's own state or output at that size: its largest number is 65504,
#: and these modules keep BN running variances of x^2-sized features (SSA's
#: saliency map; the search block's covariance pooling, x^4) or of raw
#: activations (GSoP's reduction), and the search block's unbounded FC
#: candidate scales x by a statistic of x. bfloat16 has float32's range.
FLOAT16_LIMIT = {'SSA': 10, 'GSoP': 100, 'SASESearch': 10}

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


@pytest.fixture(autouse=True)
def no_tf32():
    """Float32 means float32 on CUDA too: TF32 convolutions (cuDNN's
    default) would round the reference to 11 bits."""
    saved = (torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    (torch.backends.cudnn.allow_tf32,
     torch.backends.cuda.matmul.allow_tf32) = saved


def _activations(device, limit: float = 1e3) -> torch.Tensor:
    """(2, C, SIZE, SIZE) activations of magnitude up to ``limit``."""
    x = (torch.randn(2, C, SIZE, SIZE, device=device) *
         (0.3 * limit)).clamp(-limit, limit)
    x[0, 0, 0, 0] = limit
    return x


def _prepared(module: nn.Module, x: torch.Tensor) -> nn.Module:
    """``module`` with its parameters moved off their initial values (a
    zero GatedCT gamma or a unit BN weight would hide their arithmetic),
    and its BN running statistics those of x (one pass, momentum 1), so
    that an eval-mode BN normalises rather than saturates the sigmoids."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn_like(p))
        bns = [m for m in module.modules() if isinstance(m, _BN)]
        for bn in bns:
            bn.momentum = 1.0
        module.train()(x)
        for bn in bns:
            bn.momentum = 0.1
    return module


def _half_and_reference(module: nn.Module, dtype, train: bool):
    """(the module in ``dtype``, the float32 module of the same rounded
    state), both in the given mode."""
    half = module.to(dtype).train(train)
    return half, copy.deepcopy(half).float()


def _grad_scale(grads) -> float:
    """A power of two that brings the largest float32 gradient near 2^8,
    as AMP's loss scaler does: float16 holds 6.1e-5 to 65504."""
    top = max(g.abs().max().item() for g in grads if g is not None)
    return 2.0**max(-14, min(10, round(math.log2(2**8 / top))))


def _assert_rounded(half: torch.Tensor, ref: torch.Tensor, dtype, what):
    """``half`` is ``ref`` rounded once to ``dtype`` (module docstring)."""
    assert half.dtype == dtype, f'{what}: {half.dtype}, not {dtype}'
    assert torch.isfinite(half).all(), f'{what}: not finite'
    info = torch.finfo(dtype)
    torch.testing.assert_close(
        half.float(), ref, rtol=UNIT_ROUNDOFF[dtype],
        atol=max(1e-4 * ref.abs().max().item(),
                 info.smallest_normal * info.eps),
        msg=lambda m: f'{what}: {m}')


@pytest.mark.parametrize('train', MODES)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('name', list(ATTENTION))
def test_attention_module_in_half_precision(name, dtype, train, device):
    torch.manual_seed(0)
    x = _activations(device, FLOAT16_LIMIT.get(name, 1e3)
                     if dtype == torch.float16 else 1e3)
    half, ref = _half_and_reference(
        _prepared(ATTENTION[name]().to(device), x), dtype, train)
    state = dict(half.state_dict(keep_vars=True))
    x = x.to(dtype)
    x32 = x.float().requires_grad_()
    xh = x.clone().requires_grad_()
    y32, yh = ref(x32), half(xh)

    # The float32 output fits the dtype (no half output could hold it
    # otherwise), and the half output is its rounding.
    assert y32.abs().max() < torch.finfo(dtype).max
    _assert_rounded(yh, y32.detach(), dtype, 'output')

    params32 = [p for p in ref.parameters()]
    paramsh = [p for p in half.parameters()]
    gy = torch.randn_like(y32)
    pilot = torch.autograd.grad(y32, [x32] + params32, gy, retain_graph=True,
                                allow_unused=True)
    gyh = (gy * _grad_scale(pilot)).to(dtype)
    g32 = torch.autograd.grad(y32, [x32] + params32, gyh.float(),
                              allow_unused=True)
    gh = torch.autograd.grad(yh, [xh] + paramsh, gyh, allow_unused=True)
    names = ['input'] + [n for n, _ in half.named_parameters()]
    for what, a, b, p in zip(names, gh, g32, [xh] + paramsh):
        if b is None:
            assert a is None, f'{what}: a gradient where float32 has none'
            continue
        assert a is not None, f'{what}: no gradient'
        _assert_rounded(a, b, p.dtype, f'gradient of {what}')

    # The half model keeps its own tensors, in its dtype; in training mode
    # its BN running statistics are the float32 ones, rounded.
    after = half.state_dict(keep_vars=True)
    assert all(after[k] is v for k, v in state.items())
    for (k, b), r in zip(half.named_buffers(), ref.buffers()):
        if b.is_floating_point():
            _assert_rounded(b, r, dtype, f'buffer {k}')
        else:
            assert torch.equal(b, r), k


def test_half_block_trains_through_the_generic_graph():
    """The fused node keeps the block between forward and backward, so a
    half-precision block (float32 casts for one call) runs the generic
    graph; the float32 block still runs the node."""
    calls = []
    apply = fused_node._FusedSASE.apply
    try:
        fused_node._FusedSASE.apply = lambda *a: calls.append(1) or apply(*a)
        block = SASE(8)
        x = torch.randn(2, 8, 5, 5, requires_grad=True)
        block(x).sum().backward()
        assert calls == [1]
        block.half()(x.detach().half().requires_grad_()).sum().backward()
        assert calls == [1]
    finally:
        fused_node._FusedSASE.apply = apply
    assert all(p.grad.dtype == torch.float16 for p in block.parameters())


@pytest.mark.parametrize('dtype', DTYPES)
def test_half_alpha_mixes_in_float32(dtype):
    """The search block's mixing weights of a half-precision alpha are the
    float32 softmax of it (a softmax rounded to the dtype would be one more
    rounding inside the block), and its gradient comes back in its dtype;
    a mix bound by a pass is used as bound."""
    alphas = init_alphas().detach().to(dtype).requires_grad_()
    mix = current_mix(alphas)
    assert mix.dtype == torch.float32
    torch.testing.assert_close(mix, alphas.detach().float().softmax(-1),
                               rtol=0, atol=0)
    mix.sum().backward()
    assert alphas.grad.dtype == dtype
    bound = torch.rand(6, 7).to(dtype)
    with mixing(alphas, bound):
        assert current_mix(alphas) is bound


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('entry', ['fused_sase', 'fused_sase_op'])
def test_fused_node_refuses_half_precision(entry, dtype):
    """The fused node and operator take their statistics in x's dtype (the
    compiled kernels are float32 / float64 only): called directly with a
    half-precision input or block, they refuse it by name."""
    run = getattr(fused, entry)
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    with pytest.raises(TypeError, match=f'got a {dtype} input'):
        run(SASE(8), x.to(dtype))
    with pytest.raises(TypeError, match='got a half-precision block'):
        run(SASE(8).to(dtype), x)
    assert run(SASE(8), x).dtype == torch.float32


#: Backbones with fixed and searchable attention: (builder, input shape,
#: L the layers that round their output in the half dtype).
BACKBONES = {
    # stem conv + BN 2, 3 blocks x (2 convs, 2 BNs, attention, sum) 18,
    # 2 shortcuts x (conv, BN) 4, pooling and FC 2
    'cifar_resnet8-SASE': (lambda: CifarResNet(
        8, base_channels=8, input_size=16, attn_cfg=dict(
            type='sase_mm.SASE')), (2, 3, 16, 16), 26),
    'cifar_resnet8-SASESearch': (lambda: CifarResNet(
        8, base_channels=8, input_size=16, attn_cfg=dict(
            type='sase_mm.SASESearch')), (2, 3, 16, 16), 26),
    # stem conv + BN 2, 8 blocks x 6, 3 shortcuts x 2
    'sase_resnet18-SASE': (lambda: SASEResNet(
        18, base_channels=8, stem_channels=8), (2, 3, 64, 64), 56),
    'sase_resnet18-SASESearch': (lambda: SASEResNet(
        18, base_channels=8, stem_channels=8,
        attn_cfg=dict(type='sase_mm.SASESearch')), (2, 3, 64, 64), 56),
}


@pytest.mark.parametrize('train', MODES)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('name', list(BACKBONES))
def test_backbone_in_half_precision(name, dtype, train, device):
    build, shape, layers = BACKBONES[name]
    torch.manual_seed(0)
    half, ref = _half_and_reference(build().to(device), dtype, train)
    x = torch.randn(shape, device=device).to(dtype)
    x32 = x.float().requires_grad_()
    xh = x.clone().requires_grad_()
    y32, yh = ref(x32), half(xh)
    if isinstance(yh, tuple):  # SASEResNet: the last stage's features
        y32, yh = y32[-1], yh[-1]
    assert yh.dtype == dtype and torch.isfinite(yh).all()
    err = ((yh.float() - y32).norm() / y32.norm()).item()
    assert err <= layers * UNIT_ROUNDOFF[dtype], err

    gy = torch.randn_like(y32).to(dtype)
    yh.backward(gy)
    y32.backward(gy.float())
    assert xh.grad.dtype == dtype and torch.isfinite(xh.grad).all()
    for (k, p), q in zip(half.named_parameters(), ref.parameters()):
        if q.grad is None:
            continue
        assert p.grad is not None, f'{k}: no gradient'
        assert p.grad.dtype == dtype, f'{k}: {p.grad.dtype}'
        assert torch.isfinite(p.grad).all(), f'{k}: not finite'
