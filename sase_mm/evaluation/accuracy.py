"""Top-k classification accuracy for the search model's held-out split.

SASE (arXiv 2411.08333) judges its search by how well the supernet
classifies; this metric reads the ``predict`` outputs of ``DARTSSearch``
(``dict(pred_score=(K,), gt_label=int)`` per sample) without needing
mmpretrain's data structures. With mmpretrain models (whose predictions
are mmpretrain data samples), use mmpretrain's ``Accuracy`` instead.

It is honest about degenerate outputs: a score tied with the label's counts
against the sample (so a constant model scores 0, not 100%), and a NaN
score is an error (a diverged model must not look perfect).
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
            if torch.isnan(score).any():
                raise ValueError(
                    f'TopKAccuracy: sample {len(self.results)} has NaN '
                    f'scores ({int(torch.isnan(score).sum())} of '
                    f'{score.numel()}): the model diverged, its accuracy is '
                    f'undefined. Lower the learning rate or clip gradients.')
            # Ties with the label's score count against it: its rank is the
            # number of other classes scored at least as high.
            rank = int((score >= score[gt]).sum()) - 1
            self.results.append(rank)

    def compute_metrics(self, results: list) -> dict:
        ranks = torch.tensor(results)
        return {f'top{k}': float((ranks < k).float().mean() * 100)
                for k in self.topk}
