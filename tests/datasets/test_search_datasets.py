"""The search datasets of SASE (arXiv 2411.08333): the CIFAR-10 halves
(read from a synthetic ``cifar-10-batches-py``; never downloaded) and
scikit-learn's digits."""
import os
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from sase_mm.datasets import CIFAR10Search, DigitsSearch, split_indices
from sase_mm.registry import DATASETS


def _fake_cifar(root, per_file=6):
    d = os.path.join(root, 'cifar-10-batches-py')
    os.makedirs(d)
    rng = np.random.default_rng(0)
    files = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    for k, name in enumerate(files):
        data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        labels = [(k + i) % 10 for i in range(per_file)]
        with open(os.path.join(d, name), 'wb') as f:
            pickle.dump({'data': data, 'labels': labels}, f)
    return d


def test_cifar_halves_partition_the_training_set(tmp_path):
    _fake_cifar(str(tmp_path))
    train = CIFAR10Search(str(tmp_path), split='train')
    search = CIFAR10Search(str(tmp_path), split='search')
    full = CIFAR10Search(str(tmp_path), split='trainval')
    test = CIFAR10Search(str(tmp_path), split='test')
    assert len(train) == len(search) == 15 and len(full) == 30
    assert len(test) == 6
    key = lambda ds: {ds.images[i].numpy().tobytes() for i in range(len(ds))}  # noqa: E731,E501
    assert key(train) | key(search) == key(full)
    assert not key(train) & key(search)
    item = train[0]
    assert item['inputs'].shape == (3, 32, 32)
    assert item['inputs'].dtype == torch.float32
    assert item['data_samples'].dtype == torch.int64
    # normalised with the CIFAR statistics
    raw = train.images[0].float()
    mean = torch.tensor([125.307, 122.961, 113.8575]).view(3, 1, 1)
    std = torch.tensor([51.5865, 50.847, 51.255]).view(3, 1, 1)
    assert torch.allclose(item['inputs'], (raw - mean) / std, atol=1e-5)
    assert train.metainfo['classes'][0] == 'airplane'


def test_cifar_augmentation_keeps_shape_and_changes_pixels(tmp_path):
    _fake_cifar(str(tmp_path))
    plain = CIFAR10Search(str(tmp_path), split='train')
    aug = CIFAR10Search(str(tmp_path), split='train', augment=True)
    outs = [aug[0]['inputs'] for _ in range(8)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    assert any(not torch.equal(o, plain[0]['inputs']) for o in outs)


def test_cifar_missing_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        DATASETS.build(dict(type='sase_mm.CIFAR10Search',
                            data_root=str(tmp_path / 'nowhere')))
    msg = str(err.value)
    assert 'nowhere' in msg and 'cifar-10-batches-py' in msg
    assert 'data_batch_1' in msg and 'never downloads' in msg
    with pytest.raises(ValueError, match='split must be one of'):
        CIFAR10Search(str(tmp_path), split='val')


def test_digits_parts_upscaled_and_disjoint():
    parts = {s: DigitsSearch(split=s) for s in ('train', 'search', 'val')}
    sizes = {s: len(p) for s, p in parts.items()}
    assert sum(sizes.values()) == 1797
    assert sizes['train'] == sizes['search']
    batch = default_collate([parts['val'][i] for i in range(4)])
    assert batch['inputs'].shape == (4, 3, 32, 32)
    assert batch['data_samples'].shape == (4, )
    x = parts['train'][0]['inputs']
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    labels = torch.cat([p.labels for p in parts.values()])
    assert set(labels.tolist()) == set(range(10))
    loader = DataLoader(parts['train'], batch_size=8,
                        collate_fn=default_collate)
    assert next(iter(loader))['inputs'].shape == (8, 3, 32, 32)


def test_split_indices_is_a_seeded_partition():
    a = split_indices(10, ('x', 'y', 'z'), (0.4, 0.4, 0.2), seed=3)
    b = split_indices(10, ('x', 'y', 'z'), (0.4, 0.4, 0.2), seed=3)
    c = split_indices(10, ('x', 'y', 'z'), (0.4, 0.4, 0.2), seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert sorted(torch.cat(list(a.values())).tolist()) == list(range(10))
    with pytest.raises(ValueError, match='summing to 1'):
        split_indices(10, ('x', 'y'), (0.5, 0.6))
