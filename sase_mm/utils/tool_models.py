"""Model handling shared by the tools that run a config's model as a plain
function of an image batch (Grad-CAM, ONNX export; SASE arXiv 2411.08333).

mmpretrain classifiers and mmdet detectors differ in what "the output" is:
a classifier's ``forward(x, mode='tensor')`` gives logits; a detector has
heads on a backbone, and these tools use its backbone (or the RPN). This
module says which is which, once, and wraps a classifier as ``x -> logits``.
"""
import torch
import torch.nn as nn


def is_detector(model: nn.Module) -> bool:
    """Whether an mm model is a detector (heads on ``extract_feat``)."""
    return hasattr(model, 'extract_feat') and (
        hasattr(model, 'rpn_head') or hasattr(model, 'bbox_head'))


class ClassifierLogits(nn.Module):
    """An mmpretrain classifier as ``x (B, 3, H, W) -> logits (B, K)``
    (its ``forward(x, mode='tensor')``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, mode='tensor')
