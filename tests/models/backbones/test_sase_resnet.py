"""SASEResNet: ImageNet ResNets with an attention slot (arXiv 2411.08333).

Checks the exact parameter counts of the paper (docs/spec.md section 6), where
the attention sits, that mmpretrain's ResNet options keep working, the
shared alpha of a searchable backbone, and that an ImageClassifier
checkpoint loads into an mmdet detector's backbone key for key.
"""
import os

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DefaultScope

import sase_mm  # noqa: F401
from sase_mm.models.sase import SASE, SASESearch
from sase_mm.models.backbones import SASEBottleneck, SASEResNet
from sase_mm.registry import MODELS

X = (1, 3, 64, 64)  # small input: stage outputs 16, 8, 4, 2 pixels


def classifier_cfg(depth, attn_cfg, num_classes=1000):
    width = 2048 if depth >= 50 else 512
    backbone = dict(type='sase_mm.SASEResNet', depth=depth)
    if attn_cfg != 'default':
        backbone['attn_cfg'] = attn_cfg
    return dict(
        type='mmpretrain.ImageClassifier', backbone=backbone,
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=num_classes,
                  in_channels=width))


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('depth,attn_cfg,expected', [
    (50, 'default', 28_102_568),
    (101, 'default', 49_358_144),
    (50, dict(type='sase_mm.SASE'), 28_102_568),
    (50, None, 25_557_032),
    (101, None, 44_549_160),
])
def test_parameter_counts_with_1000_classes(depth, attn_cfg, expected):
    model = MODELS.build(classifier_cfg(depth, attn_cfg))
    assert n_params(model) == expected


def test_plain_is_mmpretrain_resnet_key_for_key():
    from mmpretrain.models.backbones import ResNet
    ours = SASEResNet(50, attn_cfg=None).eval()
    ref = ResNet(50)
    ref.eval()  # mmpretrain's train() returns None
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(X)
    assert torch.equal(ours(x)[-1], ref(x)[-1])


class Recorder(nn.Module):
    """Zeroes the residual branch and records what it saw."""
    seen = []

    def __init__(self, in_channels):
        super().__init__()
        self.in_channels = in_channels

    def forward(self, x):
        Recorder.seen.append((self.in_channels, x.shape[1]))
        return torch.zeros_like(x)


@pytest.mark.parametrize('depth', [18, 50])
def test_attention_sits_after_last_bn_before_shortcut(depth):
    Recorder.seen = []
    model = SASEResNet(depth, attn_cfg=dict(type=Recorder)).eval()
    block = model.layer2[0]  # has a downsample shortcut
    last_bn = block.norm3 if depth >= 50 else block.norm2
    inputs = {}
    last_bn.register_forward_hook(lambda m, i, o: inputs.update(bn=o))
    x = torch.randn(1, block.conv1.in_channels, 8, 8)
    out = block(x)
    # A zero attention output leaves only relu(shortcut(x)).
    assert torch.equal(out, torch.relu(block.downsample(x)))
    assert inputs['bn'].shape == out.shape
    n_blocks = sum(model.stage_blocks)
    model(torch.randn(X))
    assert len(Recorder.seen) == 1 + n_blocks
    assert all(c == seen for c, seen in Recorder.seen)


def test_default_attention_is_the_searched_block():
    model = SASEResNet(50)
    blocks = [m for m in model.modules() if isinstance(m, SASEBottleneck)]
    assert len(blocks) == 16
    assert all(isinstance(b.attention, SASE) for b in blocks)
    assert [b.attention.in_channels for b in blocks[:4]] == [256] * 3 + [512]
    sd = model.state_dict()
    assert sd['layer1.0.attention.edges.2.weight'].shape == (256, 1, 1)
    assert sd['layer4.2.attention.edges.1.reduce.weight'].shape == (128, 2048,
                                                                    1, 1)


def test_search_backbone_owns_one_alpha():
    model = SASEResNet(18, attn_cfg=dict(type='sase_mm.SASESearch'))
    alpha_keys = [k for k in model.state_dict() if k.endswith('alphas')]
    assert alpha_keys == ['alphas']
    blocks = [m for m in model.modules() if isinstance(m, SASESearch)]
    assert len(blocks) == 8
    assert all(b.arch_alphas is model.alphas and not b.owns_alphas
               for b in blocks)
    model(torch.randn(2, 3, 32, 32))[-1].square().mean().backward()
    assert model.alphas.grad is not None and model.alphas.grad.abs().sum() > 0


def test_with_cp_matches_and_backprops():
    torch.manual_seed(0)
    a = SASEResNet(18, out_indices=(3, ))
    b = SASEResNet(18, out_indices=(3, ), with_cp=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    ya, yb = a(x)[0], b(x)[0]
    assert torch.allclose(ya, yb, atol=1e-6)
    yb.sum().backward()
    assert b.layer1[0].attention.edges[2].weight.grad is not None


def test_detector_options_keep_working():
    model = SASEResNet(50, num_stages=4, out_indices=(0, 1, 2, 3),
                       frozen_stages=1, norm_eval=True, style='pytorch',
                       norm_cfg=dict(type='BN', requires_grad=True))
    model.train()
    outs = model(torch.randn(X))
    assert [tuple(o.shape) for o in outs] == [(1, 256, 16, 16),
                                              (1, 512, 8, 8),
                                              (1, 1024, 4, 4),
                                              (1, 2048, 2, 2)]
    frozen = list(model.conv1.parameters()) + list(model.layer1.parameters())
    assert frozen and not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in model.layer2.parameters())
    # norm_eval: every BN stays in eval, the attention's mixer BN included.
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not any(m.training for m in bns)
    assert not model.layer3[0].attention.mixer[1].training


@pytest.mark.parametrize('options', [
    dict(deep_stem=True, avg_down=True),
    dict(style='caffe', drop_path_rate=0.1),
    dict(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2), out_indices=(2, 3)),
])
def test_resnet_variants(options):
    model = SASEResNet(50, **options)
    outs = model(torch.randn(X))
    assert outs[-1].shape[1] == 2048
    assert torch.isfinite(outs[-1]).all()
    if 'dilations' in options:
        assert outs[-1].shape[-2:] == outs[-2].shape[-2:]


def test_zero_init_residual_zeroes_the_attention_input():
    model = SASEResNet(50)
    model.init_weights()
    assert torch.count_nonzero(model.layer1[0].norm3.weight) == 0
    assert torch.equal(model.layer1[0].attention.mixer[1].weight,
                       torch.ones(1))


def test_bad_config_errors_name_the_problem():
    with pytest.raises(KeyError, match='valid: \\[18, 34, 50, 101, 152\\]'):
        SASEResNet(42)
    with pytest.raises(KeyError, match='NoSuchAttention'):
        SASEResNet(18, attn_cfg=dict(type='sase_mm.NoSuchAttention'))
    with pytest.raises(TypeError, match='attn_cfg'):
        SASEResNet(18, attn_cfg='SASE')


def build_detector(backbone, name='faster-rcnn_r50_fpn.py'):
    """mmdet's packaged base model config ``name`` with our backbone."""
    import mmdet
    from mmdet.registry import MODELS as MMDET_MODELS
    base = os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'configs',
                        '_base_', 'models', name)
    cfg = Config.fromfile(base).model
    cfg.backbone = backbone
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MMDET_MODELS.build(cfg)


def test_classifier_checkpoint_loads_into_detector(tmp_path):
    classifier = MODELS.build(classifier_cfg(50, 'default'))
    classifier.init_weights()
    with torch.no_grad():  # distinct values everywhere
        for p in classifier.parameters():
            p.normal_()
    path = str(tmp_path / 'cls.pth')
    torch.save(dict(state_dict=classifier.state_dict(), meta={}), path)

    detector = build_detector(dict(
        type='sase_mm.SASEResNet', depth=50, num_stages=4,
        out_indices=(0, 1, 2, 3), frozen_stages=1, norm_eval=True,
        style='pytorch', norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint=path)))
    detector.init_weights()

    # mmengine's loader only warns: compare key sets explicitly.
    ckpt = torch.load(path, weights_only=True)['state_dict']
    cls_backbone = {k[len('backbone.'):]: v for k, v in ckpt.items()
                    if k.startswith('backbone.')}
    det_backbone = detector.backbone.state_dict()
    assert set(det_backbone) - set(cls_backbone) == set()  # missing
    assert set(cls_backbone) - set(det_backbone) == set()  # unexpected
    for k, v in cls_backbone.items():
        assert torch.equal(det_backbone[k], v), k
    feats = detector.extract_feat(torch.randn(X))
    assert len(feats) == 5 and feats[0].shape == (1, 256, 16, 16)


@pytest.mark.parametrize('detector,paper_millions', [
    ('faster-rcnn_r50_fpn.py', 44.3),
    ('mask-rcnn_r50_fpn.py', 46.9),
])
def test_detector_parameter_counts_match_the_paper(detector, paper_millions):
    """docs/spec.md section 6: Faster / Mask R-CNN R50 + SASE, to 0.1 M."""
    model = build_detector(dict(type='sase_mm.SASEResNet', depth=50,
                                out_indices=(0, 1, 2, 3), frozen_stages=1,
                                norm_eval=True, style='pytorch'), detector)
    assert round(n_params(model) / 1e6, 1) == paper_millions
