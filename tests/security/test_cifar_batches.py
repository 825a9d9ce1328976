"""The CIFAR-10 reader of the SASE search (arXiv 2411.08333) reads batches
with a restricted unpickler: the official layout loads, a crafted batch is
refused with its name and runs nothing."""
import os
import pickle

import numpy as np
import pytest
from data_utils import payloads

from sase_mm.datasets.cifar10 import (CIFAR10Search, CIFARFormatError,
                                      read_batch)


@pytest.mark.parametrize('style', ['py2', 'py3'])
def test_official_layout_loads(style, tmp_path):
    base = payloads.write_cifar_root(str(tmp_path), n=4, style=style)
    entry = read_batch(os.path.join(base, 'data_batch_3'))
    want = payloads.cifar_entry(4, seed=2)
    assert np.array_equal(entry['data'], want['data'])
    assert entry['labels'].tolist() == want['labels']
    ds = CIFAR10Search(str(tmp_path), split='trainval')
    assert len(ds) == 20
    test = CIFAR10Search(str(tmp_path), split='test')
    assert len(test) == 4


def test_py2_batches_use_the_numpy1_module_path(tmp_path):
    """The fixture really is in the official (Python 2) form."""
    path = payloads.write_cifar_batch(str(tmp_path / 'b'),
                                      payloads.cifar_entry(2), 'py2')
    raw = open(path, 'rb').read()
    assert b'cnumpy.core.multiarray\n_reconstruct' in raw
    assert pickle.SHORT_BINSTRING + b'\x04data' in raw


def test_crafted_batch_is_refused(tmp_path):
    marker = str(tmp_path / 'ran')
    payloads.write_cifar_root(str(tmp_path), crafted_marker=marker)
    path = os.path.join(str(tmp_path), 'cifar-10-batches-py', 'data_batch_1')
    # Control: the plain reader the project used to have runs it.
    with open(path, 'rb') as f:
        pickle.load(f, encoding='latin1')
    assert os.path.exists(marker)
    os.remove(marker)
    with pytest.raises(CIFARFormatError) as info:
        CIFAR10Search(str(tmp_path), split='train')
    assert path in str(info.value) and 'posix.system' in str(info.value)
    assert 'nothing in it was executed' in str(info.value)
    assert not os.path.exists(marker)


@pytest.mark.parametrize('entry,match', [
    ([1, 2, 3], 'official layout'),
    ({'labels': [1]}, 'official layout'),
    ({'data': np.zeros((2, 10), np.uint8), 'labels': [1, 2]}, r'\(N, 3072\)'),
    ({'data': np.zeros((2, 3072), np.uint8), 'labels': [1]}, '2 integers'),
])
def test_wrong_layout_is_named(entry, match, tmp_path):
    path = str(tmp_path / 'data_batch_1')
    with open(path, 'wb') as f:
        pickle.dump(entry, f, protocol=2)
    with pytest.raises(CIFARFormatError, match=match):
        read_batch(path)


def test_numpy_object_array_batch_is_refused(tmp_path):
    path = str(tmp_path / 'data_batch_1')
    with open(path, 'wb') as f:
        pickle.dump({'data': np.array([1, 'a'], dtype=object),
                     'labels': [0, 1]}, f, protocol=2)
    with pytest.raises(CIFARFormatError, match='Python objects'):
        read_batch(path)
