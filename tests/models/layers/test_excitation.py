"""The 1 -> 1 convolutions of ``layers/excitation.py`` (SASE, arXiv
2411.08333): the batch-grouped fast form against the plain form
(``forward_plain``), which also runs while the layers are exportable."""
import pytest
import torch

from sase_mm.models.layers.config import exportable
from sase_mm.models.layers.excitation import Conv1dChain, SpatialConv

MODULES = {
    'conv1d_k3': lambda: Conv1dChain(3),
    'conv1d_k5_x2': lambda: Conv1dChain(5, depth=2),
    'conv_3x3_x2': lambda: SpatialConv([(3, 3), (3, 3)]),
    'sep_conv_5': lambda: SpatialConv([(1, 5), (5, 1)], relu_between=False),
    'conv_7x7': lambda: SpatialConv([(7, 7)]),
}


def _input(name, b):
    shape = (b, 12, 1, 1) if name.startswith('conv1d') else (b, 1, 6, 9)
    return torch.randn(*shape, dtype=torch.float64)


@pytest.mark.parametrize('b', [1, 3])
@pytest.mark.parametrize('name', list(MODULES))
def test_grouped_form_equals_the_plain_form(name, b):
    module = MODULES[name]().double()
    for conv in module.convs:  # not the same weights in every conv
        torch.nn.init.normal_(conv.weight)
    x = _input(name, b).requires_grad_()
    fast, plain = module(x), module.forward_plain(x)
    assert fast.shape == plain.shape == x.shape
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(fast)
    got = torch.autograd.grad(fast, [x, *module.parameters()], g)
    want = torch.autograd.grad(plain, [x, *module.parameters()], g)
    for a, w in zip(got, want):
        torch.testing.assert_close(a, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('name', list(MODULES))
def test_exportable_runs_the_plain_form(name, monkeypatch):
    module = MODULES[name]().double()
    x = _input(name, 2)
    calls = []
    plain = module.forward_plain
    monkeypatch.setattr(module, 'forward_plain',
                        lambda t: calls.append(1) or plain(t))
    module(x)
    assert not calls
    with exportable():
        module(x)
    assert calls == [1]
