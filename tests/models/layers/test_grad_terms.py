"""The gradient-term algebra of ``layers/grad_terms.py`` (SASE, arXiv
2411.08333): each term's tensor, and :func:`assemble`'s sum of them (a lone
broadcast stays a view; full-size terms share one buffer)."""
import torch
from stat_inputs import B, C, H, W, feature_map

from sase_mm.models.layers.dims import HW_DIMS
from sase_mm.models.layers.grad_terms import (AtMax, Broadcast, Centred,
                                              Cube, assemble, max_indicator,
                                              product)

SHAPE = torch.Size((B, C, H, W))


def _row():
    return torch.randn(B, C, 1, 1, dtype=torch.float64)


def _col():
    return torch.randn(B, 1, H, W, dtype=torch.float64)


def test_no_terms_is_no_gradient():
    assert assemble([], SHAPE) is None


def test_lone_broadcasts_stay_a_view():
    """Broadcast terms of one shape are summed small and expanded: nothing
    full-size is written."""
    r1, r2 = _row(), _row()
    got = assemble([Broadcast((r1, )), Broadcast((r2, ))], SHAPE)
    assert got.shape == SHAPE and got.stride(2) == got.stride(3) == 0
    torch.testing.assert_close(got, (r1 + r2).expand(SHAPE))
    c = _col()
    alone = assemble([Broadcast((c, ))], SHAPE)
    assert alone.stride(1) == 0
    torch.testing.assert_close(alone, c.expand(SHAPE))


def test_every_term_as_its_formula():
    x = feature_map()
    r, c, g = _row(), _col(), _row()
    m = x.amax(HW_DIMS, keepdim=True)
    mean = x.mean(HW_DIMS, keepdim=True)
    g2, g3 = _row(), _row()
    d = x - mean
    mask = (x == m).to(x.dtype)
    want = (r * c + x.pow(3) * r * c
            + mask * g / mask.sum(HW_DIMS, keepdim=True)
            + d * (2 * g2 + 3 * g3 * d))
    terms = [Broadcast((r, c)), Cube((r, c)), AtMax(m, g, HW_DIMS),
             Centred(mean, g2, g3)]
    torch.testing.assert_close(assemble(terms, x.shape, x), want,
                               rtol=1e-12, atol=1e-12)
    # Either central gradient alone.
    torch.testing.assert_close(assemble([Centred(mean, g2, None)], x.shape,
                                        x), 2 * d * g2)
    torch.testing.assert_close(assemble([Centred(mean, None, g3)], x.shape,
                                        x), 3 * g3 * d * d)


def test_at_max_with_known_ties_equals_counted():
    x = feature_map()
    m, g = x.amax(HW_DIMS, keepdim=True), _row()
    ties = max_indicator(x, m).sum(HW_DIMS, keepdim=True)
    counted = AtMax(m, g, HW_DIMS).new(x)
    known = AtMax(m, g, HW_DIMS, ties).new(x)
    torch.testing.assert_close(known, counted)
    # The gradient is shared by the ties: it sums to g per channel.
    torch.testing.assert_close(counted.sum(HW_DIMS, keepdim=True), g)


def test_product_broadcasts():
    r, c = _row(), _col()
    torch.testing.assert_close(product([r, c, r]), r * c * r)
