"""Sizes of ``layers/dims.py`` (SASE, arXiv 2411.08333): per-position
parameters resized to the input, and the same-size shortcut that only the
fast (non-exportable) form takes."""
import pytest
import torch
import torch.nn.functional as F

from sase_mm.models.layers.config import exportable
from sase_mm.models.layers.dims import C_DIMS, HW_DIMS, count, resize_to, \
    to_size


def test_resize_to_another_size_is_bilinear():
    p = torch.randn(1, 5, 6)
    want = F.interpolate(p[None], size=(7, 3), mode='bilinear',
                         align_corners=False)[0]
    torch.testing.assert_close(resize_to(p, (7, 3)), want)


def test_same_size_shortcut_only_when_not_exportable():
    """Exportable, the parameter goes through the resize, which is then
    the identity."""
    p = torch.randn(2, 5, 6)
    assert resize_to(p, (5, 6)) is p
    with exportable():
        q = resize_to(p, (5, 6))
    assert q is not p
    torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-6)


def test_sizes():
    assert to_size(None) == (7, 7) and to_size(5) == (5, 5)
    assert to_size([3, 4]) == (3, 4)
    with pytest.raises(ValueError, match='spatial_size'):
        to_size((3, 0))
    assert count((2, 3, 4, 5), HW_DIMS) == 20
    assert count((2, 3, 4, 5), C_DIMS) == 3
