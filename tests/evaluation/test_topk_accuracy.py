"""TopKAccuracy on DARTSSearch's predict outputs (SASE, arXiv 2411.08333)."""
import pytest
import torch

from sase_mm.registry import METRICS


def test_topk_counts_rank_of_label():
    metric = METRICS.build(dict(type='sase_mm.TopKAccuracy', topk=(1, 2)))
    scores = torch.tensor([[0.7, 0.2, 0.1],    # label 0: top-1
                           [0.5, 0.3, 0.2],    # label 1: top-2
                           [0.6, 0.3, 0.1]])   # label 2: neither
    metric.process(None, [dict(pred_score=s, gt_label=torch.tensor(g))
                          for s, g in zip(scores, [0, 1, 2])])
    out = metric.evaluate(3)
    assert out['accuracy/top1'] == pytest.approx(100 / 3)
    assert out['accuracy/top2'] == pytest.approx(200 / 3)


def test_bad_inputs():
    with pytest.raises(ValueError, match='topk'):
        METRICS.build(dict(type='sase_mm.TopKAccuracy', topk=0))
    metric = METRICS.build(dict(type='sase_mm.TopKAccuracy'))
    with pytest.raises(KeyError, match='pred_score'):
        metric.process(None, [dict(pred_label=1, gt_label=1)])


def test_ties_count_against_the_sample():
    metric = METRICS.build(dict(type='sase_mm.TopKAccuracy', topk=(1, 2, 3)))
    constant = torch.full((4, 3), 0.25)  # a model that outputs a constant
    metric.process(None, [dict(pred_score=s, gt_label=torch.tensor(g))
                          for s, g in zip(constant, [0, 1, 2, 0])])
    out = metric.evaluate(4)
    assert out['accuracy/top1'] == 0 and out['accuracy/top2'] == 0
    assert out['accuracy/top3'] == 100  # all three classes are in the top 3
    metric = METRICS.build(dict(type='sase_mm.TopKAccuracy', topk=(1, 2)))
    metric.process(None, [dict(pred_score=torch.tensor([0.4, 0.4, 0.2]),
                               gt_label=torch.tensor(1))])
    out = metric.evaluate(1)
    assert out['accuracy/top1'] == 0 and out['accuracy/top2'] == 100


@pytest.mark.parametrize('scores', [torch.full((3, ), float('nan')),
                                    torch.tensor([0.1, float('nan'), 0.2])])
def test_nan_scores_raise(scores):
    metric = METRICS.build(dict(type='sase_mm.TopKAccuracy'))
    with pytest.raises(ValueError, match='NaN'):
        metric.process(None, [dict(pred_score=scores,
                                   gt_label=torch.tensor(0))])
