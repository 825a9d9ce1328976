"""A network returning logits as an mmengine model (SASE, arXiv
2411.08333: the fixed CIFAR ResNet trained with a candidate attention):
the three modes, the loss and predictions shared with the search model,
and a Runner-style train / val step."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper

from sase_mm.evaluation import TopKAccuracy
from sase_mm.models.classifiers import LogitsClassifier, logits_outputs
from sase_mm.registry import MODELS

NET = dict(type='sase_mm.CifarResNet', depth=8, num_classes=5,
           base_channels=8, input_size=8,
           attn_cfg=dict(type='sase_mm.SASE'))


def test_logits_outputs():
    logits = torch.tensor([[2., 0., -1.], [0., 3., 1.]])
    labels = torch.tensor([0, 2])
    assert logits_outputs(logits, labels, 'tensor') is logits
    loss = logits_outputs(logits, labels, 'loss')
    assert list(loss) == ['loss']
    assert torch.allclose(loss['loss'], F.cross_entropy(logits, labels))
    preds = logits_outputs(logits, labels, 'predict')
    assert [int(p['pred_label']) for p in preds] == [0, 1]
    assert [int(p['gt_label']) for p in preds] == [0, 2]
    assert torch.allclose(preds[1]['pred_score'], logits[1].softmax(-1))
    assert [p['gt_label'] for p in logits_outputs(logits, None,
                                                  'predict')] == [None] * 2
    with pytest.raises(ValueError, match="valid: 'tensor', 'loss'"):
        logits_outputs(logits, labels, 'losses')


def test_registered_modes_and_metric():
    torch.manual_seed(0)
    model = MODELS.build(dict(type='sase_mm.LogitsClassifier', network=NET))
    assert isinstance(model, LogitsClassifier)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    model.eval()
    logits = model(x, mode='tensor')
    assert logits.shape == (4, 5)
    assert torch.equal(logits, model.network(x))
    assert torch.allclose(model(x, y, mode='loss')['loss'],
                          F.cross_entropy(logits, y))
    preds = model(x, y, mode='predict')
    metric = TopKAccuracy()
    metric.process(None, preds)
    top1 = (logits.argmax(1) == y).float().mean().item() * 100
    assert metric.compute_metrics(metric.results) == dict(top1=top1)


def test_train_step_lowers_the_loss():
    torch.manual_seed(0)
    model = LogitsClassifier(NET)
    opt = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    batch = dict(inputs=torch.randn(8, 3, 8, 8),
                 data_samples=torch.arange(8) % 5)
    losses = [model.train_step(batch, opt)['loss'].item() for _ in range(8)]
    assert losses[-1] < losses[0]
    preds = model.val_step(batch)
    assert len(preds) == 8 and preds[0]['pred_score'].shape == (5, )


def test_refuses_an_mm_model():
    mm = dict(type='sase_mm.DARTSSearch', supernet=dict(
        NET, attn_cfg=dict(type='sase_mm.SASESearch')))
    with pytest.raises(TypeError, match='network returning logits'):
        LogitsClassifier(mm)
