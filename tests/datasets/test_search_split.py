"""SearchSplit: the DARTS train / search halves of any mm dataset (SASE,
arXiv 2411.08333; docs/spec.md section 3), by deterministic indices."""
import pytest
import torch
from data_utils.tiny_datasets import make_coco_dataset, make_image_folder

from sase_mm.datasets import SearchSplit, split_indices
from sase_mm.registry import DATASETS


class _Numbers(torch.utils.data.Dataset):
    metainfo = dict(classes=('a', 'b'))

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i

    def get_data_info(self, i):
        return dict(width=i, height=1)


@pytest.mark.parametrize('n,fraction', [(10, 0.5), (7, 0.3), (2, 0.5)])
def test_parts_are_disjoint_cover_and_follow_split_indices(n, fraction):
    ds = _Numbers(n)
    train = SearchSplit(ds, 'train', fraction, seed=3)
    search = SearchSplit(ds, 'search', fraction, seed=3)
    got = [train[i] for i in range(len(train))], \
        [search[i] for i in range(len(search))]
    assert sorted(got[0] + got[1]) == list(range(n))
    ref = split_indices(n, ('train', 'search'), (fraction, 1 - fraction), 3)
    assert got[0] == ref['train'].tolist()
    assert got[1] == ref['search'].tolist()
    assert train.metainfo == ds.metainfo
    assert train.get_data_info(0) == dict(width=got[0][0], height=1)
    # Deterministic: rebuilt, the same; another seed, another split.
    assert SearchSplit(ds, 'train', fraction, 3).indices == train.indices
    if n >= 7:
        assert SearchSplit(ds, 'train', fraction, 4).indices != train.indices


@pytest.mark.parametrize('kwargs,match', [
    (dict(n=1), 'too few to split'),
    (dict(n=0), 'too few to split'),
    (dict(n=4, part='val'), "part must be one of"),
    (dict(n=4, fraction=1.0), r'in \(0, 1\)'),
])
def test_bad_input_is_refused(kwargs, match):
    n = kwargs.pop('n')
    with pytest.raises(ValueError, match=match):
        SearchSplit(_Numbers(n), **kwargs)


def test_splits_an_mmpretrain_folder_and_an_mmdet_coco_set(tmp_path):
    import mmdet.registry  # noqa: F401
    import mmpretrain.registry  # noqa: F401
    root = make_image_folder(str(tmp_path / 'folder'), num_classes=2,
                             images_per_class=3, size=16)
    part = DATASETS.build(dict(
        type='sase_mm.SearchSplit', part='search', fraction=0.5,
        dataset=dict(type='mmpretrain.CustomDataset', data_root=root,
                     data_prefix='train', pipeline=[])))
    assert len(part) == 3 and part.metainfo['classes'] == ('n00000000',
                                                           'n00000001')
    assert 'img_path' in part[0]
    coco = str(tmp_path / 'coco')
    make_coco_dataset(coco, num_images=4, size=(32, 32), splits=('train2017',))
    part = DATASETS.build(dict(
        type='sase_mm.SearchSplit', part='train', fraction=0.5,
        dataset=dict(type='mmdet.CocoDataset', data_root=coco,
                     ann_file='annotations/instances_train2017.json',
                     data_prefix=dict(img='train2017/'), pipeline=[])))
    assert len(part) == 2 and len(part.metainfo['classes']) == 80
    assert part.get_data_info(0)['width'] == 32
