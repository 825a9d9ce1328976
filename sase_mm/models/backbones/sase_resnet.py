"""SASEResNet: an ImageNet ResNet with an attention module in every block.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333); ResNet: Deep Residual Learning for Image Recognition
(He et al., CVPR 2016). The searched block (or any attention plug-in) sits
after the last BN of every residual block, before the shortcut add
(docs/spec.md section 4; mmdet's plug-in position ``after_conv3``)::

    out = relu(drop_path(attention(bn3(conv3(...)))) + shortcut(x))

It subclasses mmpretrain's ``ResNet`` and blocks, so every option of theirs
keeps working (depth, strides, dilations, out_indices, style, deep_stem,
avg_down, frozen_stages, norm_eval, with_cp, zero_init_residual, init_cfg,
drop_path_rate, ...) and the state_dict keys are mmpretrain's (which are
torchvision's and mmdet's too: ``conv1``, ``bn1``, ``layerI.J.convK``,
``layerI.J.bnK``, ``layerI.J.downsample.{0,1}``) plus
``layerI.J.attention.*``. One class serves the ImageClassifier and the
mmdet detectors, so a classification checkpoint loads into a detector's
backbone with ``init_cfg=dict(type='Pretrained', prefix='backbone.',
checkpoint=...)`` with no missing or unexpected keys.
"""
import copy
from typing import Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmpretrain.models.backbones.resnet import BasicBlock, Bottleneck, ResNet

from ...registry import MODELS
from ..layers.builder import DEFAULT_ATTN_CFG, build_attention, reads_alphas
from ..sase.alphas import AlphaHolder, bind_alphas, init_alphas


class _AttentionSlot:
    """Adds ``self.attention`` to an mmpretrain residual block (a mixin
    before the block class: its ``__init__`` and ``forward`` come first)."""

    def __init__(self, in_channels: int, out_channels: int,
                 attn_cfg: Optional[dict] = None, **kwargs):
        super().__init__(in_channels, out_channels, **kwargs)
        attention = build_attention(attn_cfg, out_channels)
        if attention is None:
            self.attention = None  # plain block: no keys in the state_dict
        else:
            self.add_module('attention', attention)

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch up to its last BN (the block's own layers)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""

        def _inner_forward(x):
            out = self._branch(x)
            if self.attention is not None:
                out = self.attention(out)
            identity = x if self.downsample is None else self.downsample(x)
            out = self.drop_path(out)
            out += identity
            return out

        # use_reentrant=False: the shared alpha of a searchable attention is
        # a parameter that is not an input of the checkpointed function.
        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(_inner_forward, x, use_reentrant=False)
        else:
            out = _inner_forward(x)
        return self.relu(out)


class SASEBasicBlock(_AttentionSlot, BasicBlock):
    """mmpretrain's BasicBlock with the attention after ``norm2``.

    Args:
        in_channels (int), out_channels (int), **kwargs: as BasicBlock.
        attn_cfg (dict | None): the attention (``in_channels`` =
            ``out_channels`` is filled in); None: a plain block.
    """

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.conv2(self.relu(self.norm1(self.conv1(x)))))


class SASEBottleneck(_AttentionSlot, Bottleneck):
    """mmpretrain's Bottleneck with the attention after ``norm3``.

    Args: as :class:`SASEBasicBlock`, the rest as mmpretrain's Bottleneck.
    """

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        return self.norm3(self.conv3(out))


@MODELS.register_module()
class SASEResNet(AlphaHolder, ResNet):
    """ResNet-18/34/50/101/152 with an attention module in every block.

    Args:
        depth (int): 18, 34 (basic blocks), 50, 101, 152 (bottlenecks).
        attn_cfg (dict | None): the attention of every block, built as
            ``MODELS.build(dict(**attn_cfg, in_channels=C))`` with C the
            block's output channels. Default: the paper's searched block,
            ``dict(type='sase_mm.SASE')``. ``None`` gives a plain ResNet (the
            same keys as mmpretrain's ``ResNet``). A searchable type
            (``reads_alphas``, e.g. ``sase_mm.SASESearch``) makes the
            backbone the owner of one (6, 7) alpha (key ``alphas``), bound
            to every block after build (``sase/alphas.py``); a search model
            (``DARTSSearch``) around it binds its own instead.
        **kwargs: every option of mmpretrain's ``ResNet`` (``num_stages``,
            ``strides``, ``dilations``, ``out_indices``, ``style``,
            ``deep_stem``, ``avg_down``, ``frozen_stages``, ``conv_cfg``,
            ``norm_cfg``, ``norm_eval``, ``with_cp``, ``zero_init_residual``,
            ``init_cfg``, ``drop_path_rate``, ...).

    Forward: (B, 3, H, W) -> a tuple with one (B, C_i, H / s_i, W / s_i)
    feature per index in ``out_indices``.

    Example (mmdet Faster R-CNN backbone)::

        backbone=dict(type='sase_mm.SASEResNet', depth=50, num_stages=4,
                      out_indices=(0, 1, 2, 3), frozen_stages=1,
                      norm_cfg=dict(type='BN', requires_grad=True),
                      norm_eval=True, style='pytorch')
    """

    arch_settings = {
        18: (SASEBasicBlock, (2, 2, 2, 2)),
        34: (SASEBasicBlock, (3, 4, 6, 3)),
        50: (SASEBottleneck, (3, 4, 6, 3)),
        101: (SASEBottleneck, (3, 4, 23, 3)),
        152: (SASEBottleneck, (3, 8, 36, 3)),
    }

    def __init__(self, depth: int, attn_cfg: Optional[dict] = DEFAULT_ATTN_CFG,
                 **kwargs):
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth} for SASEResNet; valid: '
                           f'{sorted(self.arch_settings)}')
        self.attn_cfg = copy.deepcopy(attn_cfg)
        # Drawn before ResNet.__init__ builds the blocks (the first draw of
        # the random stream), registered once nn.Module can hold it, then
        # bound to the blocks.
        alphas = init_alphas() if reads_alphas(self.attn_cfg) else None
        super().__init__(depth, **kwargs)
        if alphas is not None:
            self.alphas = alphas
            bind_alphas(self, alphas)

    def train(self, mode: bool = True) -> 'SASEResNet':
        """As mmpretrain's (frozen stages, norm_eval), returning ``self``
        as ``nn.Module.train`` does (so ``model.eval()`` chains)."""
        super().train(mode)
        return self

    def make_res_layer(self, **kwargs) -> nn.Module:
        return super().make_res_layer(attn_cfg=self.attn_cfg, **kwargs)
