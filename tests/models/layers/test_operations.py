"""Every operation of SASE's four operation sets (arXiv 2411.08333).

docs/spec.md section 2: each operation keeps its set's shape contract at any
H x W (square, non-square, 7x7, 1x1, and a size other than the one it was
built for), gives finite values, and passes gradients to all its parameters.
"""
import pytest
import torch

from sase_mm.models.sase import OP_SETS

CHANNELS = 16
BATCH = 2
BUILD_SIZE = (8, 8)
# (H, W): the build size, non-square, 7x7, 1x1, and larger than built for.
SIZES = [(8, 8), (6, 10), (7, 7), (1, 1), (12, 12)]

ALL_OPS = [(set_name, op) for set_name, op_set in OP_SETS.items()
           for op in op_set.names]


def _input(set_name, h, w, positive=False):
    """The input an operation of ``set_name`` sees, and its expected output."""
    shapes = {
        'channel_squeeze': ((BATCH, CHANNELS, h, w), (BATCH, CHANNELS, 1, 1)),
        'spatial_squeeze': ((BATCH, CHANNELS, h, w), (BATCH, 1, h, w)),
        'channel_excitation': ((BATCH, CHANNELS, 1, 1),
                               (BATCH, CHANNELS, 1, 1)),
        'spatial_excitation': ((BATCH, 1, h, w), (BATCH, 1, h, w)),
    }
    in_shape, out_shape = shapes[set_name]
    x = torch.rand(in_shape) + 0.5 if positive else torch.randn(in_shape)
    return x, out_shape


def _build(set_name, op):
    return OP_SETS[set_name].build(op, CHANNELS, BUILD_SIZE)


def test_every_set_has_seven_ops():
    assert list(OP_SETS) == ['channel_squeeze', 'channel_excitation',
                             'spatial_squeeze', 'spatial_excitation']
    assert all(len(s) == 7 for s in OP_SETS.values())
    assert len(ALL_OPS) == 28


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('set_name,op', ALL_OPS,
                         ids=[f'{s}-{o}' for s, o in ALL_OPS])
@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_shape_and_finite(set_name, op, size, mode):
    module = _build(set_name, op).train(mode == 'train')
    x, out_shape = _input(set_name, *size)
    with torch.no_grad():
        y = module(x)
    assert tuple(y.shape) == out_shape, (set_name, op, size)
    assert torch.isfinite(y).all(), (set_name, op, size)


@pytest.mark.parametrize('set_name,op', ALL_OPS,
                         ids=[f'{s}-{o}' for s, o in ALL_OPS])
def test_gradients_reach_every_parameter(set_name, op):
    module = _build(set_name, op).train()
    # Positive inputs and parameters keep every ReLU (and the GAP+GMP merge)
    # active, so a zero gradient would mean a parameter is disconnected.
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(0.5, 1.5)
    x, _ = _input(set_name, *BUILD_SIZE, positive=True)
    x.requires_grad_(True)
    y = module(x)
    (y * torch.randn_like(y)).sum().backward()
    params = dict(module.named_parameters())
    assert params or op in ('gap', 'l4_pool'), f'{op} has no parameters'
    for name, p in params.items():
        assert p.grad is not None, f'{set_name}/{op}: no gradient to {name}'
        assert torch.isfinite(p.grad).all(), f'{set_name}/{op}: {name}'
        assert p.grad.abs().sum() > 0, f'{set_name}/{op}: zero grad {name}'
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize('set_name,op', ALL_OPS,
                         ids=[f'{s}-{o}' for s, o in ALL_OPS])
def test_gradients_finite_at_1x1(set_name, op):
    module = _build(set_name, op).train()
    x, _ = _input(set_name, 1, 1)
    x.requires_grad_(True)
    y = module(x)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all(), (set_name, op)
    for name, p in module.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), (op, name)


@pytest.mark.parametrize('set_name,op', [
    ('spatial_squeeze', 'l2_norm'), ('spatial_excitation', 'affine')])
def test_per_position_parameters_keep_build_size(set_name, op):
    module = _build(set_name, op)
    x, _ = _input(set_name, 12, 5)
    module(x)
    for p in module.parameters():
        assert tuple(p.shape[-2:]) == BUILD_SIZE


SQUEEZE_OPS = [(s, o) for s, o in ALL_OPS if s.endswith('squeeze')]


@pytest.mark.parametrize('size', [(3, 5), (1, 1)],
                         ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('set_name,op', SQUEEZE_OPS,
                         ids=[f'{s}-{o}' for s, o in SQUEEZE_OPS])
def test_squeeze_backward_matches_finite_differences(set_name, op, size):
    """The hand-written backward passes (shared statistics, L4 pooling,
    L2 norms, ...) against numerical differentiation, in float64."""
    module = OP_SETS[set_name].build(op, 4, size).double().eval()
    x = torch.randn(2, 4, *size, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x, ), eps=1e-6, atol=1e-5)


def test_gated_statistics_backward_matches_finite_differences():
    """E3's statistics of gate * x, computed without building the product."""
    from sase_mm.models.layers import FeatureStats
    x = torch.randn(2, 4, 3, 5, dtype=torch.double, requires_grad=True)
    gate = torch.randn(2, 4, 1, 1, dtype=torch.double, requires_grad=True)

    def stats(x, gate):
        s = FeatureStats.gated(x, gate)
        return s.mean((1, )), s.pow4_sum((1, )), s.amax((1, ))

    assert torch.autograd.gradcheck(stats, (x, gate), eps=1e-6, atol=1e-5)
    # ... and they equal the statistics of the materialised product.
    plain = FeatureStats(gate * x)
    for a, b in zip(stats(x, gate), (plain.mean((1, )), plain.pow4_sum(
            (1, )), plain.amax((1, )))):
        assert torch.allclose(a, b)


def test_cov_pool_batch_one_few_channels_is_a_clear_error():
    from sase_mm.models.layers import ChannelCovPool
    op = ChannelCovPool(4).train()
    with pytest.raises(ValueError, match='batch of at least 2'):
        op(torch.randn(1, 4, 5, 5))
    assert op(torch.randn(2, 4, 5, 5)).shape == (2, 4, 1, 1)
    assert op.eval()(torch.randn(1, 4, 5, 5)).shape == (1, 4, 1, 1)
