"""The CIFAR ResNet (depth 6n + 2) with an attention slot in every block.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333) searches its block on ResNet-20 / CIFAR-10 (docs/spec.md
section 3); the network is He et al.'s CIFAR ResNet (Deep Residual Learning,
CVPR 2016, section 4.2): conv3x3(3 -> 16), BN, ReLU; three stages of n
BasicBlocks with 16, 32, 64 channels and strides 1, 2, 2; a 1x1 conv + BN
shortcut where the shape changes; global average pool; linear classifier.

The attention sits after the second BN of each basic block, before the
shortcut add. With searchable attention (``SASESearch``) the network owns
one (6, 7) alpha, drawn before any layer, and binds it to its blocks after
building them (``sase/alphas.py``); a search model around the network binds
its own alpha instead. The blocks take their mixing weights from the pass
(``sase/mixing.py``).
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...registry import MODELS
from ..layers.builder import build_attention, reads_alphas
from ..sase.alphas import AlphaHolder, bind_alphas, init_alphas

__all__ = ['CifarBasicBlock', 'CifarResNet']


class CifarBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN-[attention] + shortcut, then ReLU.

    Args:
        in_channels (int): C_in.
        out_channels (int): C_out.
        stride (int): stride of the first conv (and of the shortcut).
        attn_cfg (dict | None): attention after the second BN (None: none).
        spatial_size (int, optional): the output feature size, handed to
            attention types that take ``spatial_size`` (when the config does
            not set it).

    Forward: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 attn_cfg: Optional[dict] = None,
                 spatial_size: Optional[int] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        extra = {} if spatial_size is None else dict(spatial_size=spatial_size)
        self.attention = build_attention(attn_cfg, out_channels, **extra)
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, H, W)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.attention is not None:
            out = self.attention(out)
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


@MODELS.register_module()
class CifarResNet(AlphaHolder, nn.Module):
    """ResNet-20/32/44/56/110 for 32 x 32 images, with attention slots.

    Args:
        depth (int): 6n + 2 (20, 32, 44, 56, 110, or any such value >= 8).
        num_classes (int): > 0 adds global average pooling and a linear
            classifier and ``forward`` returns logits (B, num_classes);
            0 makes it a backbone returning a tuple of stage features
            (for mmpretrain's ``ImageClassifier`` with a GAP neck).
        attn_cfg (dict | None): the attention after the second BN of every
            block, e.g. ``dict(type='sase_mm.SASESearch')`` or
            ``dict(type='sase_mm.SASE', genotype=...)``; None: plain ResNet.
            A searchable attention (``reads_alphas``) makes the network the
            owner of one (6, 7) alpha (key ``alphas``) that all its blocks
            read, until a search model binds its own.
        base_channels (int): channels of the first stage (16); the stages
            have 1x, 2x, 4x.
        in_channels (int): image channels (3).
        input_size (int): the image size the blocks are built for (32): the
            stages see input_size, /2, /4, handed to the attention as
            ``spatial_size`` (any size still works at run time).
        out_indices (Sequence[int]): stages returned when num_classes == 0.

    Forward: (B, in_channels, H, W) -> logits (B, num_classes), or a tuple
    of (B, base_channels * 2^i, H / 2^i, W / 2^i) for i in out_indices.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10,
                 attn_cfg: Optional[dict] = None,
                 base_channels: int = 16, in_channels: int = 3,
                 input_size: int = 32,
                 out_indices: Sequence[int] = (2, )):
        super().__init__()
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f'CifarResNet depth must be 6n + 2 with n >= 1 '
                             f'(20, 32, 44, 56, 110, ...), got {depth!r}')
        if any(i not in (0, 1, 2) for i in out_indices):
            raise ValueError(f'out_indices must be in (0, 1, 2), got '
                             f'{tuple(out_indices)}')
        self.depth = depth
        self.num_classes = num_classes
        self.out_indices = tuple(out_indices)
        if reads_alphas(attn_cfg):
            # Drawn before any layer (the first draw of the random stream),
            # bound to the blocks once they are built.
            self.alphas = init_alphas()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, base_channels, 3, 1, 1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(base_channels)
        channels = base_channels
        self.layers = nn.ModuleList()
        for i in range(3):
            out_channels = base_channels * 2**i
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(CifarBasicBlock(
                    channels, out_channels, stride, attn_cfg,
                    spatial_size=max(1, input_size // 2**i)))
                channels = out_channels
            self.layers.append(nn.ModuleList(blocks))
        self.fc = nn.Linear(channels, num_classes) if num_classes > 0 \
            else None
        self._init_backbone_weights()
        if self.owns_alphas:
            bind_alphas(self, self.alphas)

    def _init_backbone_weights(self):
        # He init for the network's own convs; the attention operations keep
        # their own initialisation (e.g. affine a = 1, b = 0).
        for m in self.modules():
            if isinstance(m, CifarBasicBlock):
                convs = [m.conv1, m.conv2]
                if m.downsample is not None:
                    convs.append(m.downsample[0])
                for conv in convs:
                    nn.init.kaiming_normal_(conv.weight, mode='fan_out',
                                            nonlinearity='relu')
        nn.init.kaiming_normal_(self.conv1.weight, mode='fan_out',
                                nonlinearity='relu')

    def forward(self, x: torch.Tensor
                ) -> Union[torch.Tensor, Tuple[torch.Tensor, ...]]:
        """x: (B, 3, H, W)."""
        x = F.relu(self.bn1(self.conv1(x)))
        outs = []
        for i, layer in enumerate(self.layers):
            for block in layer:
                x = block(x)
            if i in self.out_indices:
                outs.append(x)
        if self.fc is None:
            return tuple(outs)
        return self.fc(x.mean(dim=(2, 3)))
