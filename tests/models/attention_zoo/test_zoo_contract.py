"""The plug-in contract, shared by every zoo module (and SASE for reference).

Shape at several H x W (non-square, 1 x 1), gradients reaching every
parameter, registry builds by ``type='sase_mm.<Name>'`` from sase_mm's and
mmengine's root registries and through mmcv's plugin builder, and clear
errors for a bad ``in_channels``.
"""
import pytest
import torch
from mmengine.registry import MODELS as ROOT_MODELS

from sase_mm.models import attention_zoo
from sase_mm.models.attention_zoo import ZOO
from sase_mm.registry import MODELS


def test_zoo_names_are_the_issue_names():
    assert set(ZOO) == {'SE', 'SSA', 'ECA', 'CBAM', 'SRM', 'GCT', 'GSoP',
                        'MCA', 'EAN', 'GatedCT'}


@pytest.mark.parametrize('name', ZOO)
@pytest.mark.parametrize('hw', [(6, 6), (5, 9), (1, 1), (2, 1)])
def test_shape_preserved(name, hw):
    m = MODELS.build(dict(type=f'sase_mm.{name}', in_channels=16))
    x = torch.randn(2, 16, *hw)
    y = m(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize('name', ZOO)
def test_output_depends_on_input_through_attention(name):
    # Not a pass-through: the output is x rescaled by an input-dependent map
    # (GatedCT is the identity only at its initial parameters).
    m = MODELS.build(dict(type=f'sase_mm.{name}', in_channels=16)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(2, 16, 5, 4)
    assert not torch.allclose(m(x), x, atol=1e-4)


@pytest.mark.parametrize('name', ZOO)
def test_gradients_reach_every_parameter(name):
    # 64 channels: SE/CBAM get 4 hidden units, not a single one that a
    # negative pre-activation could switch off for the whole batch.
    m = MODELS.build(dict(type=f'sase_mm.{name}', in_channels=64))
    with torch.no_grad():  # away from the initial values that zero a term
        for p in m.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(3, 64, 5, 6, requires_grad=True)
    (m(x) * torch.randn(3, 64, 5, 6)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in m.named_parameters():
        assert p.grad is not None, f'{name}.{pname} got no gradient'
        assert torch.isfinite(p.grad).all(), f'{name}.{pname}: non-finite'
        assert p.grad.abs().sum() > 0, f'{name}.{pname}: zero gradient'


@pytest.mark.parametrize('name', ZOO)
def test_registry_build_by_scoped_name(name):
    cls = getattr(attention_zoo, name)
    for registry in (MODELS, ROOT_MODELS):
        m = registry.build(dict(type=f'sase_mm.{name}', in_channels=32))
        assert type(m) is cls
        assert m.in_channels == 32


@pytest.mark.parametrize('name', ZOO)
def test_mmcv_plugin_contract(name):
    from mmcv.cnn import build_plugin_layer
    cls = getattr(attention_zoo, name)
    assert isinstance(cls._abbr_, str) and cls._abbr_ == cls._abbr_.lower()
    layer_name, layer = build_plugin_layer(
        dict(type=f'sase_mm.{name}'), postfix='_3', in_channels=64)
    assert layer_name == cls._abbr_ + '_3'
    assert type(layer) is cls
    x = torch.randn(2, 64, 4, 4)
    assert layer(x).shape == x.shape


@pytest.mark.parametrize('name', ZOO)
@pytest.mark.parametrize('bad', [0, -4, 16.0, '16', None])
def test_bad_in_channels_is_a_clear_error(name, bad):
    with pytest.raises((TypeError, ValueError), match='in_channels'):
        MODELS.build(dict(type=f'sase_mm.{name}', in_channels=bad))
