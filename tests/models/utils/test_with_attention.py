"""The config route: ``type='sase_mm.WithAttention'`` around mmpretrain models.

The subject is mmpretrain's ResNet-18 at a quarter of its width (stages of
16, 32, 64, 128 channels: the same layers, a fast build), from the registry
alone and as the backbone of an ImageClassifier config.
"""
import pytest
import torch
import torch.nn as nn
from mmengine.registry import MODELS as ROOT_MODELS

from sase_mm.models.utils import Conv2dWithAttention
from sase_mm.registry import MODELS

RESNET18 = dict(type='mmpretrain.ResNet', depth=18, stem_channels=16,
                base_channels=16)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def qualifying(model, min_channels):
    return [m.out_channels for m in model.modules()
            if isinstance(m, nn.Conv2d) and m.out_channels >= min_channels]


@pytest.mark.parametrize('registry', [MODELS, ROOT_MODELS])
def test_builds_the_inner_model_with_attention(registry):
    plain = MODELS.build(RESNET18)
    expected = qualifying(plain, 64)
    model = registry.build(dict(
        type='sase_mm.WithAttention', model=RESNET18,
        attn_cfg=dict(type='sase_mm.SE'), min_channels=64,
        latent_channels=0.25))
    assert type(model) is type(plain)  # the inner model itself
    got = [m.conv.out_channels for m in model.modules()
           if isinstance(m, Conv2dWithAttention)]
    assert got == expected
    assert n_params(model) - n_params(plain) == sum(
        2 * c * (c // 4) + c // 4 + c for c in expected)
    model.eval()
    feats = model(torch.randn(1, 3, 16, 16))
    assert feats[-1].shape == (1, 128, 1, 1)


def test_image_classifier_config_trains_a_step():
    cfg = dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(type='sase_mm.WithAttention', model=RESNET18,
                      attn_cfg=dict(type='sase_mm.ECA'), min_channels=32),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=4,
                  in_channels=128,
                  loss=dict(type='mmpretrain.CrossEntropyLoss')))
    model = MODELS.build(cfg)
    model.init_weights()
    n_wrapped = sum(isinstance(m, Conv2dWithAttention)
                    for m in model.backbone.modules())
    assert n_wrapped == len(qualifying(MODELS.build(RESNET18), 32))
    from mmpretrain.structures import DataSample
    x = torch.randn(2, 3, 16, 16)
    samples = [DataSample().set_gt_label(i) for i in (0, 3)]
    losses = model(x, samples, mode='loss')
    losses['loss'].backward()
    eca = next(m.attention for m in model.backbone.modules()
               if isinstance(m, Conv2dWithAttention))
    assert eca.excite.convs[0].weight.grad is not None


def test_plain_backbone_checkpoint_loads_with_only_attention_missing():
    plain = MODELS.build(RESNET18)
    model = MODELS.build(dict(type='sase_mm.WithAttention', model=RESNET18,
                              min_channels=128))
    result = model.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys
    assert all('.attention.' in k for k in result.missing_keys)


def test_bad_model_argument_is_a_clear_error():
    with pytest.raises(TypeError, match='model must be'):
        MODELS.build(dict(type='sase_mm.WithAttention', model='ResNet'))
