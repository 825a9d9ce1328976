"""``layers/numerics.py`` (SASE, arXiv 2411.08333): the safe root (named
apart from ``tests/models/sase/test_numerics.py``: test basenames are
unique)."""
import torch

from sase_mm.models.layers.numerics import safe_sqrt


def test_equals_the_root_above_the_floor():
    x = torch.rand(10, dtype=torch.float64) + 1e-3
    torch.testing.assert_close(safe_sqrt(x), x.sqrt())
    torch.testing.assert_close(safe_sqrt(x, p=4.0), x.pow(0.25))


def test_finite_gradient_at_zero():
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    for p in (2.0, 3.0, 4.0):
        g, = torch.autograd.grad(safe_sqrt(x, p).sum(), x)
        assert torch.equal(g, torch.zeros_like(x))
    assert torch.isinf(torch.autograd.grad(x.sqrt().sum(), x)[0]).all()
