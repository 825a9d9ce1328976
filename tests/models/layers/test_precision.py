"""The float32 policy of ``layers/precision.py`` (SASE, arXiv 2411.08333):
half-precision inputs and autocast run the statistics in float32 and give
back the input's dtype; float32 / float64 without autocast are untouched.
A half-precision module runs on float32 casts of its state, which it gets
back unchanged (its BN running statistics updated in training)."""
import pytest
import torch
import torch.nn as nn

from sase_mm.models.layers.precision import (HALF_DTYPES, float32_state,
                                             half_in_float32, in_float32,
                                             is_half, state_is_cast)


def _probe(seen):
    def fn(t):
        seen.append((t.dtype, torch.is_autocast_enabled('cpu')))
        return t.pow(4).sum(dim=(2, 3), keepdim=True).pow(0.25)  # L4 pool
    return fn


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_full_precision_is_unchanged(dtype):
    x = torch.randn(2, 3, 4, 4, dtype=dtype)
    seen = []
    out = in_float32(_probe(seen), x)
    assert seen == [(dtype, False)] and out.dtype == dtype
    torch.testing.assert_close(
        out, x.pow(4).sum(dim=(2, 3), keepdim=True).pow(0.25))


@pytest.mark.parametrize('dtype', HALF_DTYPES)
def test_half_input_runs_in_float32(dtype):
    """A float16 fourth power overflows above about 16: in float32 the L4
    pool of 40s is finite (40 * 4^(1/4)), and comes back in x's dtype."""
    x = torch.full((1, 2, 2, 2), 40.0).to(dtype)
    if dtype == torch.float16:
        assert not torch.isfinite(_probe([])(x)).any()  # without the policy
    seen = []
    out = in_float32(_probe(seen), x)
    assert seen == [(torch.float32, False)] and out.dtype == dtype
    torch.testing.assert_close(out.float(),
                               torch.full((1, 2, 1, 1), 40 * 4 ** 0.25),
                               rtol=1e-2, atol=0)


def test_autocast_is_turned_off_inside():
    x = torch.randn(2, 3, 4, 4)
    seen = []
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = in_float32(_probe(seen), x)
    assert seen == [(torch.float32, False)] and out.dtype == torch.float32


class _Net(nn.Module):
    """A conv, a BN and a conv tied to the first: parameters used twice,
    a buffer updated in training."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)
        self.tied = nn.Conv2d(3, 3, 1)
        self.tied.weight = self.conv.weight

    def forward(self, x):
        return self.tied(self.bn(self.conv(x)))


@pytest.mark.parametrize('dtype', HALF_DTYPES)
def test_float32_state_casts_and_restores(dtype):
    net = _Net().to(dtype)
    before = dict(net.state_dict(keep_vars=True))
    x = torch.randn(2, 3, 4, 4)
    with float32_state(net) as cast:
        assert cast and state_is_cast(net) and state_is_cast(net.bn)
        assert all(t.dtype == torch.float32
                   for t in net.state_dict(keep_vars=True).values()
                   if t.is_floating_point())
        assert net.tied.weight is net.conv.weight  # tied: cast once
        y = net(x)
    assert not state_is_cast(net)
    assert all(net.state_dict(keep_vars=True)[k] is v
               for k, v in before.items())
    y.sum().backward()
    w = net.conv.weight
    assert w.dtype == dtype and w.grad.dtype == dtype
    # The tied weight's two uses add up in float32, rounded once.
    ref = _Net()
    ref.load_state_dict({k: v.float() for k, v in net.state_dict().items()})
    ref(x).sum().backward()  # training-mode BN: the buffers do not matter
    torch.testing.assert_close(w.grad, ref.conv.weight.grad.to(dtype),
                               rtol=0, atol=0)


@pytest.mark.parametrize('training', [True, False])
def test_float32_state_writes_running_statistics_back_in_training(training):
    net = _Net().half().train(training)
    x = torch.randn(2, 3, 4, 4) * 5
    ref = _Net().train(training)
    ref.load_state_dict({k: v.float() for k, v in net.state_dict().items()})
    with torch.no_grad(), float32_state(net):
        net(x)
        ref(x)
    assert net.bn.running_var.dtype == torch.float16
    torch.testing.assert_close(net.bn.running_var,
                               ref.bn.running_var.half(), rtol=0, atol=0)
    assert net.bn.num_batches_tracked.item() == int(training)
    moved = not torch.equal(net.bn.running_var, torch.ones(3).half())
    assert moved == training


def test_float32_state_restores_without_writing_back_on_error():
    net = _Net().half()
    var = net.bn.running_var
    with pytest.raises(RuntimeError, match='boom'):
        with float32_state(net):
            net(torch.randn(2, 3, 4, 4) * 5)
            raise RuntimeError('boom')
    assert net.bn.running_var is var
    assert torch.equal(var, torch.ones(3).half())
    assert not state_is_cast(net)


def test_float32_state_leaves_full_precision_modules_alone():
    net = _Net()
    with float32_state(net) as cast:
        assert not cast and not state_is_cast(net)
        assert isinstance(net.conv.weight, nn.Parameter)


def test_is_half():
    assert not is_half(_Net()) and is_half(_Net().bfloat16())
    assert is_half(nn.BatchNorm2d(3, affine=False).half())  # buffers only
    assert not is_half(nn.ReLU())  # no state


@pytest.mark.parametrize('dtype', HALF_DTYPES)
def test_in_float32_runs_a_half_module_on_float32_casts(dtype):
    net = _Net().to(dtype)
    seen = []

    def fn(t):
        seen.append((t.dtype, net.conv.weight.dtype))
        return net(t)

    x = torch.randn(2, 3, 4, 4).to(dtype)
    out = in_float32(fn, x, net)
    assert seen == [(torch.float32, torch.float32)] and out.dtype == dtype
    # A float32 input is the caller's own: fn runs as it is, and torch's
    # dtype checks refuse the half weights, as for torch's own layers.
    with pytest.raises(RuntimeError):
        in_float32(fn, x.float(), net)
    assert seen[-1] == (torch.float32, dtype)


def test_half_in_float32_leaves_autocast_to_autocast():
    seen = []

    class Probe(nn.Module):
        """A zoo-style module: records what its forward sees."""

        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        @half_in_float32
        def forward(self, x):
            """The doc string stays."""
            seen.append((x.dtype, torch.is_autocast_enabled('cpu'),
                         self.scale.dtype))
            return x * self.scale

    m = Probe()
    assert Probe.forward.__doc__ == 'The doc string stays.'
    x = torch.randn(2, 3).bfloat16()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert m(x).dtype == torch.bfloat16
    assert m(x).dtype == torch.bfloat16
    assert m(x.float()).dtype == torch.float32
    m.half()
    assert m(x.half()).dtype == torch.float16
    assert seen == [(torch.bfloat16, True, torch.float32),
                    (torch.float32, False, torch.float32),
                    (torch.float32, False, torch.float32),
                    (torch.float32, False, torch.float32)]
