"""A network returning logits, as an mmengine model.

SASE (arXiv 2411.08333) searches its block on a CIFAR ResNet and compares
the searched block with others (SE, no attention, random blocks) by
training that network with each. The network's ``forward(x)`` returns
logits (B, K); an mmengine Runner wants a ``BaseModel`` with the modes
``tensor`` / ``loss`` / ``predict``. This module owns that answer, once:
:func:`logits_outputs` (the cross-entropy for ``loss``, one
``dict(pred_label, pred_score, gt_label)`` per sample for ``predict``, what
``sase_mm.TopKAccuracy`` reads), used by :class:`LogitsClassifier` and by
the search model ``DARTSSearch`` for its networks of our own.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.model import BaseModel

from ..registry import MODELS


def logits_outputs(logits: torch.Tensor,
                   data_samples: Optional[torch.Tensor], mode: str):
    """What an mmengine model returns for ``mode``, from logits.

    Args:
        logits: (B, K) class scores before the softmax.
        data_samples: (B,) int64 labels, or None (``tensor`` and
            ``predict`` only).
        mode: ``'tensor'``, ``'loss'`` or ``'predict'``.

    Returns:
        ``'tensor'``: the logits (B, K); ``'loss'``:
        ``dict(loss=cross-entropy)``; ``'predict'``: a list of B
        ``dict(pred_label=(), pred_score=(K,), gt_label=() or None)``.
    """
    if mode == 'tensor':
        return logits
    if mode == 'loss':
        return dict(loss=F.cross_entropy(logits, data_samples))
    if mode == 'predict':
        scores = logits.softmax(dim=-1)
        preds = scores.argmax(dim=-1)
        gts = [None] * len(preds) if data_samples is None else data_samples
        return [dict(pred_label=p, pred_score=s, gt_label=g)
                for p, s, g in zip(preds, scores, gts)]
    raise ValueError(f'invalid mode {mode!r}; valid: \'tensor\', '
                     f'\'loss\', \'predict\'')


@MODELS.register_module()
class LogitsClassifier(BaseModel):
    """Trains and evaluates a network whose ``forward(x)`` returns logits.

    Args:
        network (dict): config of the network, e.g. ``dict(
            type='sase_mm.CifarResNet', depth=20, num_classes=10,
            attn_cfg=dict(type='sase_mm.SASE'))``; its forward maps
            (B, C, H, W) -> (B, K).
        data_preprocessor (dict, optional): mmengine data preprocessor
            (default: one that moves the batch to the model's device).
        init_cfg (dict, optional): mmengine initialisation config.

    Batches (``default_collate``): ``dict(inputs=(B, C, H, W) float,
    data_samples=(B,) int64 labels)``.
    """

    def __init__(self, network: dict,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        if isinstance(network, dict):
            network = MODELS.build(ConfigDict(network))
        if isinstance(network, BaseModel):
            raise TypeError(
                f'LogitsClassifier wraps a network returning logits (e.g. '
                f'sase_mm.CifarResNet with num_classes > 0); '
                f'{type(network).__name__} is an mm model with its own '
                f'loss and predict: train it directly')
        self.network = network

    def forward(self, inputs: torch.Tensor,
                data_samples: Optional[torch.Tensor] = None,
                mode: str = 'tensor'):
        """inputs (B, C, H, W); data_samples (B,) labels; see
        :func:`logits_outputs` for what each mode returns."""
        return logits_outputs(self.network(inputs), data_samples, mode)
