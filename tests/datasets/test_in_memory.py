"""The in-memory search datasets (SASE, arXiv 2411.08333) inside
mmengine's dataset wrappers: the train and search halves of a search
config concatenated, as a study of its fixed network trains on them."""
import torch

from sase_mm.registry import DATASETS


def test_concat_dataset_of_two_halves():
    halves = [dict(type='sase_mm.DigitsSearch', split=s, size=8)
              for s in ('train', 'search')]
    both = DATASETS.build(dict(type='ConcatDataset', datasets=halves))
    train, search = (DATASETS.build(h) for h in halves)
    assert len(both) == len(train) + len(search)
    assert both.metainfo == train.metainfo
    assert torch.equal(both[0]['inputs'], train[0]['inputs'])
    last = both[len(both) - 1]
    assert torch.equal(last['inputs'], search[len(search) - 1]['inputs'])
    assert int(last['data_samples']) == int(search.labels[-1])
