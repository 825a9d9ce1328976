"""The fused spatial map (``fast/fused/spatial.py``) equals the modules.

SASE (arXiv 2411.08333): s5 = E5(M(cat[E3, E4])), the mixer M =
Conv(2 -> 1) + BN + ReLU (docs/spec.md section 1) and E5 a convolution
chain or not. One node of compiled kernels gives the values, the gradients
(both maps, every parameter) and the BN running statistics of the mixer
module followed by the edge's operation, in training and in evaluation
mode, with BN affine (the fixed block) or not (the search block), with
momentum or a cumulative average; second derivatives stay exact.
"""
import copy

import pytest
import torch
from fused_blocks import built_kernels

from sase_mm.models.sase.dag import SpatialMixer
from sase_mm.models.sase.fast.batched_edges import chain_kernels, plan_edge
from sase_mm.models.sase.fast.fused.spatial import fused_spatial_map
from sase_mm.models.sase.space import SPATIAL_EXCITATION


def _setup(op_name, affine=True, training=True, momentum=0.1, seed=0):
    torch.manual_seed(seed)
    mixer = SpatialMixer(affine=affine)
    mixer[1].momentum = momentum
    op = SPATIAL_EXCITATION.build(op_name, 8, (5, 7))
    with torch.no_grad():  # off the init: no gradient cancels by symmetry
        for p in [*mixer.parameters(), *op.parameters()]:
            p.add_(0.3 * torch.randn_like(p))
        mixer[1].running_mean.fill_(0.2)
        mixer[1].running_var.fill_(1.5)
    mixer, op = mixer.double().train(training), op.double()
    return mixer, op


def _maps(b=3, hw=(5, 7), seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 1, *hw, dtype=torch.float64, generator=g)
            .requires_grad_() for _ in range(2)]


def _fused(mixer, op, a, b):
    plan = plan_edge('spatial_excitation', [op])
    kernels = chain_kernels(plan, [op]) if plan.chains else ()
    out = fused_spatial_map(mixer, a, b, kernels)
    assert out is not None
    return out if plan.chains else op(out)


@pytest.mark.parametrize('momentum', [0.1, None], ids=['momentum', 'cma'])
@pytest.mark.parametrize('training', [True, False], ids=['train', 'eval'])
@pytest.mark.parametrize('affine', [True, False], ids=['affine', 'plain_bn'])
@pytest.mark.parametrize('op_name', list(SPATIAL_EXCITATION.names))
def test_fused_spatial_map_equals_mixer_and_edge(op_name, affine, training,
                                                 momentum):
    built_kernels()
    mixer, op = _setup(op_name, affine, training, momentum)
    ref_mixer, ref_op = copy.deepcopy(mixer), copy.deepcopy(op)
    a, b = _maps()
    ra, rb = (t.detach().clone().requires_grad_() for t in (a, b))
    for step in range(2):  # running statistics move twice alike
        got = _fused(mixer, op, a, b)
        want = ref_op(ref_mixer(ra, rb))
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-12)
        g = torch.randn_like(got)
        params = [*mixer.parameters(), *op.parameters()]
        ref_params = [*ref_mixer.parameters(), *ref_op.parameters()]
        for x, y in zip(torch.autograd.grad(got, [a, b] + params, g),
                        torch.autograd.grad(want, [ra, rb] + ref_params, g)):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
        for x, y in zip(mixer.buffers(), ref_mixer.buffers()):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize('training', [True, False], ids=['train', 'eval'])
def test_fused_spatial_map_second_derivatives(training):
    built_kernels()
    mixer, op = _setup('conv_3x3_x2', training=training)
    ref_mixer, ref_op = copy.deepcopy(mixer), copy.deepcopy(op)
    a, b = _maps(2, (4, 5))
    ra, rb = (t.detach().clone().requires_grad_() for t in (a, b))
    g, v = torch.randn(2, 1, 4, 5, dtype=torch.float64), torch.randn(
        2, 1, 4, 5, dtype=torch.float64)

    def second(out, maps, params):
        (ga, ) = torch.autograd.grad(out, [maps[0]], g, create_graph=True)
        return torch.autograd.grad((ga * v).sum(), maps + params,
                                   allow_unused=True)

    got = second(_fused(mixer, op, a, b), [a, b],
                 [*mixer.parameters(), *op.parameters()])
    want = second(ref_op(ref_mixer(ra, rb)), [ra, rb],
                  [*ref_mixer.parameters(), *ref_op.parameters()])
    for x, y in zip(got, want):
        assert (x is None) == (y is None)
        if x is not None:
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_fused_spatial_map_declines_where_it_does_not_apply(monkeypatch):
    built_kernels()
    mixer, op = _setup('conv_3x3')
    kernels = chain_kernels(plan_edge('spatial_excitation', [op]), [op])
    # One value per channel: nn.BatchNorm2d raises its own error for that.
    one = torch.randn(1, 1, 1, 1, dtype=torch.float64)
    assert fused_spatial_map(mixer, one, one, kernels) is None
    a, b = _maps()
    assert fused_spatial_map(mixer, a, b.float(), kernels) is None
    import sase_mm.models.sase.fast.map_conv as map_conv_mod
    monkeypatch.setattr(map_conv_mod, 'fused_kernels', lambda: None)
    assert fused_spatial_map(mixer, a, b, kernels) is None
