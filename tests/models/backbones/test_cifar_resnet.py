"""The CIFAR ResNet (depth 6n + 2) with an attention slot (SASE,
arXiv 2411.08333; docs/spec.md section 3; He et al. 2016, section 4.2)."""
import pytest
import torch
import torch.nn as nn

from sase_mm.models.backbones import CifarBasicBlock, CifarResNet
from sase_mm.models.sase import (SASE, SASESearch, bind_alphas, init_alphas,
                                 mixing)
from sase_mm.registry import MODELS


def _plain_params(depth, classes=10):
    """Parameter count from the architecture's definition (1x1 conv + BN
    shortcuts where the shape changes)."""
    n = (depth - 2) // 6
    conv = lambda cin, cout, k: cin * cout * k * k  # noqa: E731
    total = conv(3, 16, 3) + 2 * 16
    cin = 16
    for c in (16, 32, 64):
        for j in range(n):
            total += conv(cin, c, 3) + conv(c, c, 3) + 4 * c
            if cin != c:
                total += conv(cin, c, 1) + 2 * c
            cin = c
    return total + 64 * classes + classes


@pytest.mark.parametrize('depth', [20, 32, 44, 56, 110])
def test_plain_depths(depth):
    model = CifarResNet(depth=depth)
    blocks = [m for m in model.modules() if isinstance(m, CifarBasicBlock)]
    assert len(blocks) == 3 * (depth - 2) // 6
    assert sum(p.numel() for p in model.parameters()) == _plain_params(depth)
    shortcuts = [b for b in blocks if b.downsample is not None]
    assert len(shortcuts) == 2  # where 16 -> 32 and 32 -> 64


def test_resnet20_shapes_and_backbone_mode():
    x = torch.randn(2, 3, 32, 32)
    assert CifarResNet(20)(x).shape == (2, 10)
    feats = CifarResNet(20, num_classes=0, out_indices=(0, 1, 2))(x)
    assert [tuple(f.shape) for f in feats] == [(2, 16, 32, 32),
                                               (2, 32, 16, 16),
                                               (2, 64, 8, 8)]
    with pytest.raises(ValueError, match='6n \\+ 2'):
        CifarResNet(depth=21)


class _Recorder(nn.Module):
    """An attention that records what it sees and scales it by 2."""
    seen = []

    def __init__(self, in_channels):
        super().__init__()
        self.in_channels = in_channels

    def forward(self, x):
        _Recorder.seen.append(x.detach())
        return 2 * x


def test_attention_after_second_bn_before_add():
    _Recorder.seen.clear()
    block = CifarBasicBlock(8, 8, attn_cfg=dict(type=_Recorder)).eval()
    x = torch.randn(2, 8, 6, 6)
    out = block(x)
    ref = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    assert torch.allclose(_Recorder.seen[0], ref, atol=1e-6)
    assert torch.allclose(out, torch.relu(2 * ref + x), atol=1e-6)


def test_search_blocks_share_one_alpha_and_know_their_size():
    model = MODELS.build(dict(type='sase_mm.CifarResNet', depth=8,
                              base_channels=8,
                              attn_cfg=dict(type='sase_mm.SASESearch')))
    blocks = [m for m in model.modules() if isinstance(m, SASESearch)]
    assert [b.spatial_size for b in blocks] == [32, 16, 8]
    assert all(b.arch_alphas is model.alphas for b in blocks)
    assert [k for k in model.state_dict() if 'alphas' in k] == ['alphas']
    # bound to an outer owner's alpha: the network holds a reference only
    alphas = init_alphas()
    shared = CifarResNet(8, base_channels=8,
                         attn_cfg=dict(type='sase_mm.SASESearch'))
    assert bind_alphas(shared, alphas) is alphas
    assert shared.arch_alphas is alphas
    assert all(b.arch_alphas is alphas for b in shared.modules()
               if isinstance(b, SASESearch))
    assert not [k for k in shared.state_dict() if 'alphas' in k]


def test_forward_weights_drive_the_search_blocks():
    model = CifarResNet(8, base_channels=8, input_size=8,
                        attn_cfg=dict(type='sase_mm.SASESearch')).eval()
    x = torch.randn(2, 3, 8, 8)
    onehot = torch.zeros(6, 7)
    onehot[:, 0] = 1
    default = model(x)  # softmax(alpha) of the shared alpha
    with mixing(model.alphas, model.alphas.softmax(-1)):
        assert torch.allclose(default, model(x))
    with mixing(model.alphas, onehot):
        assert not torch.allclose(default, model(x), atol=1e-4)


def test_fixed_block_and_plain():
    model = CifarResNet(8, base_channels=8,
                        attn_cfg=dict(type='sase_mm.SASE',
                                      genotype='sase_paper'))
    assert sum(isinstance(m, SASE) for m in model.modules()) == 3
    assert model.arch_alphas is None
    assert CifarResNet(8, attn_cfg=None).layers[0][0].attention is None
