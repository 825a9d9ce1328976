"""Convolutions of 1-channel maps (``fast/map_conv.py``) equal conv2d.

SASE (arXiv 2411.08333): the excitations' convolutions (docs/spec.md
sections 2.3, 2.4) on (B, 1, H, W) maps and on the (1, C) channel sequence.
Both forms of :func:`map_conv` (the compiled kernels; ``conv2d`` with the
kernels padded to the largest, as on a GPU) and :func:`conv_chain_gate`
give the values and gradients of plain ``conv2d`` calls, one per kernel,
in float64 on odd sizes (a kernel wider than its map included), and their
second derivatives are exact.
"""
import pytest
import torch
import torch.nn.functional as F
from fused_blocks import built_kernels

import sase_mm.models.sase.fast.map_conv as map_conv_mod
from sase_mm.models.sase.fast.map_conv import conv_chain_gate, map_conv

SIZES = [(3, 3), (1, 5), (5, 1), (7, 7), (9, 3), (1, 1)]


@pytest.fixture(params=['kernels', 'conv2d'])
def form(request, monkeypatch):
    if request.param == 'kernels':
        built_kernels()
    else:
        monkeypatch.setattr(map_conv_mod, 'compiled_applies',
                            lambda x: False)
    return request.param


def _kernels(sizes=SIZES, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 1, *s, dtype=torch.float64, generator=g)
            .requires_grad_() for s in sizes]


def _reference(x, kernels):
    """One plain conv2d per kernel, kernel j on map j (or on the one map)."""
    return torch.cat([
        F.conv2d(x if x.shape[1] == 1 else x[:, j:j + 1], k,
                 padding=(k.shape[-2] // 2, k.shape[-1] // 2))
        for j, k in enumerate(kernels)], 1)


def _grads(y, inputs, g):
    return torch.autograd.grad(y, inputs, g)


@pytest.mark.parametrize('hw', [(7, 5), (1, 11), (5, 5), (4, 9)], ids=str)
@pytest.mark.parametrize('shared', [True, False], ids=['shared', 'depthwise'])
def test_map_conv_equals_conv2d(form, hw, shared):
    kernels = _kernels()
    x = torch.randn(3, 1 if shared else len(kernels), *hw,
                    dtype=torch.float64, requires_grad=True)
    y, ref = map_conv(x, kernels), _reference(x, kernels)
    assert y.shape == (3, len(kernels), *hw)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    for a, b in zip(_grads(y, [x] + kernels, g),
                    _grads(ref, [x] + kernels, g)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_map_conv_1d_kernels_on_a_channel_sequence(form):
    # A Conv1d weight (1, 1, k) is a (1, k) kernel: the (B, C) values of a
    # channel excitation as (B, 1, 1, C) maps, ECA's convolution.
    kernels = [torch.randn(1, 1, k, dtype=torch.float64, requires_grad=True)
               for k in (3, 5, 7)]
    x = torch.randn(4, 1, 1, 13, dtype=torch.float64, requires_grad=True)
    y = map_conv(x, kernels)
    ref = torch.cat([F.conv1d(x.view(4, 1, 13), k, padding=k.shape[-1] // 2)
                     for k in kernels], 1).view(4, 3, 1, 13)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    for a, b in zip(_grads(y, [x] + kernels, g),
                    _grads(ref, [x] + kernels, g)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('shared', [True, False], ids=['shared', 'depthwise'])
def test_map_conv_derivatives_of_every_order(form, shared):
    # DARTS's second-order step differentiates a gradient.
    kernels = _kernels([(3, 3), (1, 5), (3, 1)])
    x = torch.randn(2, 1 if shared else 3, 5, 4, dtype=torch.float64,
                    requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *k: map_conv(x, k),
                                    (x, *kernels))
    assert torch.autograd.gradgradcheck(lambda x, *k: map_conv(x, k),
                                        (x, *kernels))


def test_map_conv_float32_matches_float64():
    built_kernels()
    kernels = _kernels()
    x = torch.randn(8, 1, 9, 7, dtype=torch.float64)
    want = _reference(x, kernels).detach()
    got = map_conv(x.float(), [k.detach().float() for k in kernels])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('sizes', [[(3, 3), (3, 3)], [(5, 5)],
                                   [(1, 7), (3, 1), (5, 3)]], ids=str)
def test_conv_chain_gate_equals_its_layers(form, sizes):
    kernels = _kernels(sizes, seed=1)
    x = torch.randn(3, 1, 7, 6, dtype=torch.float64, requires_grad=True)
    y = x
    for i, k in enumerate(kernels):
        y = _reference(F.relu(y) if i else y, [k])
    ref = torch.sigmoid(y)
    got = conv_chain_gate(x, kernels)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(got)
    for a, b in zip(_grads(got, [x] + kernels, g),
                    _grads(ref, [x] + kernels, g)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradgradcheck(lambda x, *k: conv_chain_gate(x, k),
                                        (x, *kernels))


def test_conv_chain_gate_kernel_gradients_do_not_share_memory():
    # One flat gradient cut per kernel must not leave the kernels' .grad
    # as views of one buffer.
    built_kernels()
    kernels = _kernels([(3, 3), (3, 3)])
    conv_chain_gate(torch.randn(2, 1, 5, 5, dtype=torch.float64),
                    kernels).sum().backward()
    a, b = (k.grad for k in kernels)
    assert a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr()


@pytest.mark.parametrize('x,kernels,match', [
    (torch.randn(2, 3, 4, 4), [torch.randn(1, 1, 3, 3)] * 2,
     r'\(B, 1, H, W\) or \(B, 2, H, W\) for 2 kernels, got \(2, 3, 4, 4\)'),
    (torch.randn(2, 1, 4, 4), [torch.randn(1, 1, 2, 3)],
     r'odd, got \[\(2, 3\)\]'),
], ids=['maps', 'even'])
def test_map_conv_refuses_bad_input(x, kernels, match):
    with pytest.raises(ValueError, match=match):
        map_conv(x, kernels)
