"""tools/convert_reference_checkpoint.py on reference-layout checkpoints.

SASE (arXiv 2411.08333). The authors' checkpoints are synthesised here from
the key layout of docs/spec.md section 8: a torchvision ResNet-50 whose
Bottlenecks carry an ``attention`` module written below from the spec (its
forward follows the block numerics of docs/spec.md sections 1-2), and an mmdet
detector whose backbone is that ResNet under ``backbone.``. The converted
checkpoints must load strictly into this project's models and give the
outputs of the reference model with the same weights.
"""
import importlib.util
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import Bottleneck as TVBottleneck
from torchvision.models.resnet import ResNet as TVResNet

import sase_mm  # noqa: F401
from sase_mm.apis.reference_layout import ConversionError, convert_checkpoint
from sase_mm.registry import MODELS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, 'tools', 'convert_reference_checkpoint.py')
X = (1, 3, 64, 64)


# ---------------------------------------------------------------------------
# The reference layout (docs/spec.md section 8), written from the spec.
# ---------------------------------------------------------------------------
class RefGapGmp(nn.Module):
    """_ops.0: [GAP, GMP] per channel -> Conv(2 -> 1, 1x1) -> ReLU."""

    def __init__(self):
        super().__init__()
        self.mixer = nn.Module()
        self.mixer.mixer = nn.Sequential(nn.Conv2d(2, 1, 1, bias=False),
                                         nn.ReLU())

    def forward(self, x):
        b, c = x.shape[:2]
        pair = torch.stack([x.mean((2, 3)), x.amax((2, 3))], 1)  # (B, 2, C)
        return self.mixer.mixer(pair.unsqueeze(-1)).view(b, c, 1, 1)


class RefAffine(nn.Module):
    """_ops.2: sigmoid(alpha * x + beta), per channel."""

    def __init__(self, c):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(c, 1, 1))
        self.beta = nn.Parameter(torch.zeros(c, 1, 1))

    def forward(self, x):
        return torch.sigmoid(self.alpha * x + self.beta)


class RefL4(nn.Module):
    """_ops.3: (sum over C of x^4)^(1/4)."""

    def forward(self, x):
        return x.pow(4).sum(1, keepdim=True).pow(0.25)


class RefGap(nn.Module):
    """_ops.4: mean over C."""

    def forward(self, x):
        return x.mean(1, keepdim=True)


class RefAttention(nn.Module):
    """The searched block in the reference layout."""

    def __init__(self, c):
        super().__init__()
        self._ops = nn.ModuleList([
            RefGapGmp(),
            nn.Sequential(nn.Conv2d(c, c // 16, 1, bias=False), nn.ReLU(),
                          nn.Conv2d(c // 16, c, 1, bias=False)),
            RefAffine(c), RefL4(), RefGap(),
            nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, bias=False),
                          nn.ReLU(),
                          nn.Conv2d(1, 1, 3, padding=1, bias=False),
                          nn.Sigmoid())])
        self.mixer = nn.Sequential(nn.Conv2d(2, 1, 1, bias=False),
                                   nn.BatchNorm2d(1), nn.ReLU())

    def forward(self, x):
        ops = self._ops
        s1 = ops[0](x)
        s2 = ops[1](s1)
        s3 = ops[2](s1) * x
        s4 = self.mixer(torch.cat([ops[3](s3), ops[4](x)], 1))
        s5 = ops[5](s4)
        return x * (s2 + s5) / 2 + x


class RefBottleneck(TVBottleneck):

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.attention = RefAttention(self.bn3.num_features)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.attention(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


def randomise_(model, calib_shape):
    """Non-trivial values for every parameter and BN statistic.

    Random weights, then the BN statistics of one random batch of
    ``calib_shape`` (momentum 1), so activations stay in range through the
    whole network in eval mode.
    """
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.named_parameters():
            if name.endswith('weight') and t.dim() == 1:  # BN scale
                t.uniform_(0.5, 1.0, generator=g)
            elif t.dim() >= 2 and t[0].numel() > 1:  # conv / fc
                t.normal_(0, (1.0 / t[0].numel())**0.5, generator=g)
            else:
                t.normal_(0, 0.5, generator=g)
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in bns:
            m.momentum = 1.0
        model.train()
        model(torch.randn(calib_shape, generator=g))
        for m in bns:
            m.momentum = 0.1
    return model.eval()


def tv_features(model, x):
    """The torchvision ResNet's four stage outputs."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    outs = []
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = layer(x)
        outs.append(x)
    return outs


@pytest.fixture(scope='module')
def reference():
    torch.manual_seed(0)
    return randomise_(TVResNet(RefBottleneck, [3, 4, 6, 3],
                               num_classes=1000), (2, 3, 64, 64))


@pytest.fixture(scope='module')
def ref_ckpt(reference, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('ref') / 'sase_r50_imagenet.pth')
    # DataParallel-style keys, as training scripts of the time saved them.
    sd = {f'module.{k}': v for k, v in reference.state_dict().items()}
    torch.save({'state_dict': sd}, path)
    return path


def classifier_cfg():
    return dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(type='sase_mm.SASEResNet', depth=50),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=1000,
                  in_channels=2048))


def run_tool(argv, capsys):
    """The command line tool's main(), in this process."""
    spec = importlib.util.spec_from_file_location('convert_tool', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rc = tool.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_classifier_converts_and_matches_reference(reference, ref_ckpt,
                                                   tmp_path, capsys):
    dst = str(tmp_path / 'sase_r50_mm.pth')
    rc, stdout, stderr = run_tool([ref_ckpt, dst, '--depth', '50'], capsys)
    assert rc == 0, stderr
    assert 'ResNet-50 + SASE classifier' in stdout
    assert '28,102,568 parameters' in stdout  # the paper's 28.10 M
    assert '16 attention blocks' in stdout

    out = torch.load(dst, weights_only=True)
    sd = out['state_dict']
    ref_sd = reference.state_dict()
    assert len(sd) == len(ref_sd)  # every key consumed, none added
    assert 'head.fc.weight' in sd and 'fc.weight' not in sd
    assert torch.equal(sd['backbone.layer2.1.attention.edges.2.bias'],
                       ref_sd['layer2.1.attention._ops.2.beta'])

    model = MODELS.build(classifier_cfg()).eval()
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(X)
    with torch.no_grad():
        ours = model(x, mode='tensor')
        theirs = reference(x)
    assert ours.shape == theirs.shape == (1, 1000)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 *
                          theirs.abs().max().item())


def test_detector_converts_and_matches_reference(reference, tmp_path):
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.registry import DefaultScope
    from mmengine.config import Config
    import mmdet
    base = os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'configs',
                        '_base_', 'models', 'faster-rcnn_r50_fpn.py')
    cfg = Config.fromfile(base).model
    cfg.backbone = dict(type='sase_mm.SASEResNet', depth=50,
                        out_indices=(0, 1, 2, 3), frozen_stages=1,
                        norm_eval=True, style='pytorch')
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = MMDET_MODELS.build(cfg).eval()

    # The reference detector: mmdet keys, the backbone in reference layout.
    heads = {k: torch.randn_like(v) if v.is_floating_point() else v
             for k, v in detector.state_dict().items()
             if not k.startswith('backbone.')}
    backbone = {f'backbone.{k}': v for k, v in reference.state_dict().items()
                if not k.startswith('fc.')}
    src = str(tmp_path / 'faster_rcnn_sase_r50.pth')
    torch.save({'meta': {'epoch': 12}, 'state_dict': {**backbone, **heads}},
               src)
    dst = str(tmp_path / 'converted.pth')
    summary = convert_checkpoint(src, dst)
    assert summary['layout'] == 'detector' and summary['depth'] == 50
    assert set(summary['passthrough']) == {'neck', 'rpn_head', 'roi_head'}

    sd = torch.load(dst, weights_only=True)['state_dict']
    result = detector.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in heads.items():
        assert torch.equal(sd[k], v), k
    x = torch.randn(X)
    with torch.no_grad():
        ours = detector.backbone(x)
        theirs = tv_features(reference, x)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max())


def _sd(reference):
    return {k: v.clone() for k, v in reference.state_dict().items()}


def test_raw_and_model_wrappers_and_old_bn_counters(reference, tmp_path):
    sd = {k: v for k, v in _sd(reference).items()
          if not k.endswith('num_batches_tracked')}
    for i, ckpt in enumerate([sd, {'model': sd}]):
        dst = str(tmp_path / f'out{i}.pth')
        summary = convert_checkpoint(_save(ckpt, tmp_path / f'in{i}.pth'),
                                     dst)
        assert summary['filled_num_batches_tracked'] == 53 + 16
        out = torch.load(dst, weights_only=True)['state_dict']
        assert out['backbone.bn1.num_batches_tracked'].item() == 0


def _save(obj, path):
    torch.save(obj, str(path))
    return str(path)


def test_unknown_and_missing_keys_are_named(reference, tmp_path):
    sd = _sd(reference)
    del sd['layer3.2.attention._ops.5.2.weight']
    sd['layer1.0.attention._ops.3.weight'] = torch.zeros(1)
    dst = tmp_path / 'never.pth'
    with pytest.raises(ConversionError) as err:
        convert_checkpoint(_save(sd, tmp_path / 'bad.pth'), str(dst))
    msg = str(err.value)
    assert 'unknown keys: [layer1.0.attention._ops.3.weight]' in msg
    assert 'missing keys: [layer3.2.attention.edges.5.convs.1.weight]' in msg
    assert not dst.exists()  # nothing half-written

    sd = _sd(reference)
    sd['layer4.0.bn9.weight'] = torch.zeros(1)
    with pytest.raises(ConversionError, match='unknown keys: '
                       '\\[layer4.0.bn9.weight\\]'):
        convert_checkpoint(_save(sd, tmp_path / 'bad2.pth'), str(dst))


def test_shape_mismatch_is_named(reference, tmp_path):
    sd = _sd(reference)
    sd['layer1.1.attention._ops.2.alpha'] = torch.ones(256)
    with pytest.raises(ConversionError,
                       match='layer1.1.attention.edges.2.weight: \\(256,\\)'):
        convert_checkpoint(_save(sd, tmp_path / 'bad.pth'),
                           str(tmp_path / 'o.pth'))


def test_wrong_depth_is_a_clear_error(ref_ckpt, tmp_path, capsys):
    dst = str(tmp_path / 'o.pth')
    rc, _, stderr = run_tool([ref_ckpt, dst, '--depth', '101'], capsys)
    assert rc == 1
    assert 'wrong depth: the checkpoint is a ResNet-50' in stderr
    assert 'depth 101 was asked for' in stderr
    assert not os.path.exists(dst)


def test_not_a_resnet_checkpoint(tmp_path):
    with pytest.raises(ConversionError, match='not a ResNet checkpoint'):
        convert_checkpoint(_save({'w': torch.zeros(1)}, tmp_path / 'x.pth'),
                           str(tmp_path / 'o.pth'))
    with pytest.raises(ConversionError, match='not tensors'):
        convert_checkpoint(_save({'epoch': 3, 'w': torch.zeros(1)},
                                 tmp_path / 'y.pth'), str(tmp_path / 'o.pth'))


def test_reference_numerics_reused_by_our_block():
    """Our SASE block and the reference block agree with the same weights."""
    from sase_mm.models.sase import SASE
    from sase_mm.apis.reference_layout import REFERENCE_ATTENTION_KEYS
    ref = randomise_(RefAttention(64), (2, 64, 5, 6))
    ours = SASE(64).eval()
    ours.load_state_dict({REFERENCE_ATTENTION_KEYS[k]: v
                          for k, v in ref.state_dict().items()}, strict=True)
    x = torch.randn(2, 64, 5, 6)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)
    assert F.mse_loss(ours(x), x) > 0  # the block does something
