"""Backbones with an attention slot in every residual block.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333).
"""
from ..layers.builder import (DEFAULT_ATTN_CFG, attention_class,
                              build_attention, is_searchable)
from .cifar_resnet import CifarBasicBlock, CifarResNet
from .sase_resnet import SASEBasicBlock, SASEBottleneck, SASEResNet

__all__ = [
    'CifarBasicBlock', 'CifarResNet',
    'DEFAULT_ATTN_CFG', 'SASEBasicBlock', 'SASEBottleneck', 'SASEResNet',
    'attention_class', 'build_attention', 'is_searchable'
]
