"""Model handling shared by the tools that run a config's model as a plain
function of an image batch (Grad-CAM, ONNX export; SASE arXiv 2411.08333).

mmpretrain classifiers and mmdet detectors differ in what "the output" is:
a classifier's ``forward(x, mode='tensor')`` gives logits; a detector has
heads on a backbone, and these tools use its backbone (or the RPN). This
module says which is which, once, wraps a classifier as ``x -> logits``,
and builds a config's model as the Runner would.
"""
import torch
import torch.nn as nn


def build_config_model(cfg, seed: int = 0) -> nn.Module:
    """The config's model, built as mmengine's Runner builds it (the
    top-level ``data_preprocessor`` of mmpretrain configs merged in), under
    the config's default scope, with the constructors' initialisation
    seeded by ``seed`` (no ``init_weights``)."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        # What mmengine's Runner does: mmpretrain configs keep it outside.
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(seed)
    return MODELS.build(model_cfg)


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
