"""Top-k classification accuracy for the search model's held-out split.

SASE (arXiv 2411.08333) judges its search by how well the supernet
classifies; this metric reads the ``predict`` outputs of ``DARTSSearch``
(``dict(pred_score=(K,), gt_label=int)`` per sample) without needing
mmpretrain's data structures. With mmpretrain models, use mmpretrain's
``Accuracy`` instead.
"""
from typing import Sequence

import torch
from mmengine.evaluator import BaseMetric

from ..registry import METRICS


@METRICS.register_module()
class TopKAccuracy(BaseMetric):
    """Percentage of samples whose label is among the k best scores.

    Args:
        topk (int | Sequence[int]): the k values (default 1); keys
            ``accuracy/top{k}`` (with the default prefix).
        collect_device (str): 'cpu' or 'gpu' for gathering across ranks.
        prefix (str, optional): key prefix.
    """
    default_prefix = 'accuracy'

    def __init__(self, topk=(1, ), collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        if not self.topk or any(int(k) < 1 for k in self.topk):
            raise ValueError(f'topk must be positive ints, got {topk!r}')

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'pred_score' not in sample or sample.get('gt_label') is None:
                raise KeyError('TopKAccuracy reads dict(pred_score=..., '
                               'gt_label=...) per sample, got keys '
                               f'{sorted(sample)}')
            score = torch.as_tensor(sample['pred_score']).float().cpu()
            gt = int(sample['gt_label'])
            rank = int((score > score[gt]).sum())  # 0 when gt is the best
            self.results.append(rank)

    def compute_metrics(self, results: list) -> dict:
        ranks = torch.tensor(results)
        return {f'top{k}': float((ranks < k).float().mean() * 100)
                for k in self.topk}
