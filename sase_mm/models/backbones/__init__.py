"""Backbones with an attention slot in every residual block.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333).
"""
from .cifar_resnet import CifarBasicBlock, CifarResNet
from .sase_resnet import SASEBasicBlock, SASEBottleneck, SASEResNet

__all__ = [
    'CifarBasicBlock', 'CifarResNet', 'SASEBasicBlock', 'SASEBottleneck',
    'SASEResNet'
]
