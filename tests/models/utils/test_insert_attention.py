"""insert_attention on a torchvision ResNet-18 (architecture-agnostic SE card).

The expected counts are computed from the untouched model: which Conv2d
layers have at least ``min_channels`` output channels, and what each
attention module should add for those widths.
"""
import copy
import math

import pytest
import torch
import torch.nn as nn
from torchvision.models import resnet18

from sase_mm.models.utils import (Conv2dWithAttention, insert_attention,
                                  qualifying_convs)


@pytest.fixture(scope='module')
def _pristine_resnet18():
    return resnet18(weights=None)


@pytest.fixture
def resnet(_pristine_resnet18):
    """A fresh torchvision ResNet-18 (a copy: building one is slow)."""
    return copy.deepcopy(_pristine_resnet18)


def small_model():
    return nn.Sequential(nn.Conv2d(3, 128, 3), nn.BatchNorm2d(128),
                         nn.Conv2d(128, 64, 1))


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def qualifying(model, min_channels):
    return [(name, m.out_channels) for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.out_channels >= min_channels]


def wrapped(model):
    return [(name, m.conv.out_channels) for name, m in model.named_modules()
            if isinstance(m, Conv2dWithAttention)]


def se_params(c, hidden):
    return 2 * c * hidden + hidden + c


def eca_params(c):
    t = int(abs((math.log2(c) + 1) / 2))
    return t if t % 2 else t + 1


@pytest.mark.parametrize('min_channels', [128, 256, 1])
@pytest.mark.parametrize('latent,hidden_of', [
    (None, lambda c: 64),  # the card's default
    (32, lambda c: 32),
    (0.125, lambda c: c // 8),  # a fraction of the conv's output channels
])
def test_se_after_every_qualifying_conv(resnet, min_channels, latent,
                                        hidden_of):
    model = resnet
    expected = qualifying(model, min_channels)
    before = n_params(model)
    assert expected  # the subject has qualifying convs
    insert_attention(model, dict(type='sase_mm.SE'),
                     min_channels=min_channels, latent_channels=latent)
    assert wrapped(model) == expected
    assert n_params(model) - before == sum(
        se_params(c, hidden_of(c)) for _, c in expected)
    for _, m in model.named_modules():
        if isinstance(m, Conv2dWithAttention):
            assert m.attention.reduce.out_channels == hidden_of(
                m.conv.out_channels)


def test_forward_backward_and_attention_runs_after_the_conv(resnet):
    model = insert_attention(resnet, dict(type='sase_mm.ECA'),
                             min_channels=256)
    x = torch.randn(2, 3, 16, 16)
    out = model(x)
    assert out.shape == (2, 1000)
    out.sum().backward()
    eca = model.layer3[0].conv1.attention
    assert eca.excite.convs[0].weight.grad is not None
    # The wrapper is conv, then attention.
    layer = model.layer4[0].conv2
    z = torch.randn(2, 512, 3, 3)
    torch.testing.assert_close(layer(z), layer.attention(layer.conv(z)))


@pytest.mark.parametrize('attn,per_conv', [
    ('sase_mm.ECA', eca_params),
    ('sase_mm.SSA', lambda c: 2),
    ('sase_mm.GatedCT', lambda c: 3 * c),
    ('sase_mm.GCT', lambda c: 0),
    ('sase_mm.SRM', lambda c: 4 * c),
])
def test_parameter_free_width_modules(resnet, attn, per_conv):
    model = resnet
    expected = qualifying(model, 128)
    before = n_params(model)
    insert_attention(model, dict(type=attn), min_channels=128)
    assert len(wrapped(model)) == len(expected)
    assert n_params(model) - before == sum(per_conv(c) for _, c in expected)


def test_second_call_adds_nothing_and_attention_convs_are_not_targets(
        resnet):
    model = resnet
    insert_attention(model, min_channels=64)  # SE has 1x1 convs of width C
    n = n_params(model)
    count = len(wrapped(model))
    assert qualifying_convs(model, 64) == []
    insert_attention(model, min_channels=64)
    assert n_params(model) == n and len(wrapped(model)) == count


def test_plain_checkpoint_loads_into_the_model_with_attention(resnet):
    plain = copy.deepcopy(resnet)
    model = insert_attention(resnet, min_channels=128)
    result = model.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all('.attention.' in k
                                       for k in result.missing_keys)
    torch.testing.assert_close(model.layer4[1].conv2.conv.weight,
                               plain.layer4[1].conv2.weight)
    # And its own state dict round-trips strictly.
    again = insert_attention(copy.deepcopy(plain), min_channels=128)
    again.load_state_dict(model.state_dict())


def test_wrapper_exposes_the_conv_attributes(resnet):
    model = insert_attention(resnet, min_channels=512)
    layer = model.layer4[0].conv1
    assert isinstance(layer, Conv2dWithAttention)
    assert layer.out_channels == 512 and layer.kernel_size == (3, 3)
    assert layer.weight is layer.conv.weight
    with pytest.raises(AttributeError):
        layer.no_such_attribute


def test_shared_conv_is_wrapped_once():
    conv = nn.Conv2d(3, 128, 1)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    insert_attention(model, min_channels=128)
    assert model[0] is model[2]
    assert isinstance(model[0], Conv2dWithAttention)


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(attn_cfg='SE'), TypeError, 'attn_cfg'),
    (dict(attn_cfg=dict(reduction=4)), TypeError, 'type'),
    (dict(attn_cfg=dict(type='sase_mm.NoSuchAttention')), KeyError,
     'not registered'),
    (dict(attn_cfg=dict(type='sase_mm.SE', in_channels=8)), ValueError,
     'in_channels'),
    (dict(min_channels=-1), ValueError, 'min_channels'),
    (dict(min_channels=1.5), TypeError, 'min_channels'),
    (dict(latent_channels=0), ValueError, 'latent_channels'),
    (dict(latent_channels=2.5), ValueError, 'latent_channels'),
    (dict(attn_cfg=dict(type='sase_mm.ECA'), latent_channels=64), ValueError,
     'no hidden layer'),
    (dict(attn_cfg=dict(type='sase_mm.SE', reduction=8), latent_channels=16),
     ValueError, 'conflicts'),
])
def test_bad_arguments_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        insert_attention(small_model(), **kwargs)


def test_bad_model_is_a_clear_error():
    with pytest.raises(TypeError, match='nn.Module'):
        insert_attention(object())
    with pytest.raises(TypeError, match='Conv2d'):
        insert_attention(nn.Conv2d(3, 256, 1))


def test_reduction_in_attn_cfg_replaces_the_card_default(resnet):
    model = insert_attention(resnet,
                             dict(type='sase_mm.SE', reduction=16),
                             min_channels=512)
    assert model.layer4[0].conv1.attention.reduce.out_channels == 512 // 16
