"""CIFAR-10 (python version) split for a DARTS search.

SASE (arXiv 2411.08333) searches on CIFAR-10 with the 50,000 training images
split in two halves, one for the weights and one for the architecture
weights (docs/spec.md section 3). This reads the "CIFAR-10 python version"
(``cifar-10-batches-py``) from disk; it never downloads.

The batches are pickles, so a crafted ``data_batch_1`` could run code when
read. They are read by a restricted unpickler that resolves only what the
official files need (numpy's array reconstruction, and ``_codecs.encode``
for batches re-pickled by Python 3); builtin containers, bytes and str need
no global. Anything else is refused with the file's name.
"""
import os

import numpy as np
import torch

from ..registry import DATASETS
from ..utils.safe_pickle import (UnsafePickleError, safe_codecs_encode,
                                 numpy_globals, restricted_load)
from .in_memory import InMemoryClassification
from .split import search_part

CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                   'frog', 'horse', 'ship', 'truck')
# Per-channel statistics of the training set, in 0..255 units.
CIFAR10_MEAN = (125.307, 122.961, 113.8575)
CIFAR10_STD = (51.5865, 50.847, 51.255)
TRAIN_FILES = tuple(f'data_batch_{i}' for i in range(1, 6))
TEST_FILES = ('test_batch', )
SPLITS = ('train', 'search', 'trainval', 'test')


LAYOUT = ('the "CIFAR-10 python version" (cifar-10-python.tar.gz from '
          'https://www.cs.toronto.edu/~kriz/cifar.html, extracted):\n'
          '  <data_root>/cifar-10-batches-py/data_batch_1 ... data_batch_5\n'
          '  <data_root>/cifar-10-batches-py/test_batch\n'
          '(`tar xzf cifar-10-python.tar.gz -C <data_root>`; sase_mm never '
          'downloads data)')


def _batch_files(data_root: str) -> list:
    """The six files, under ``data_root/cifar-10-batches-py`` (or right in
    ``data_root`` when they are there)."""
    for root in (os.path.join(data_root, 'cifar-10-batches-py'), data_root):
        files = [os.path.join(root, f) for f in TRAIN_FILES + TEST_FILES]
        if all(os.path.isfile(f) for f in files):
            return files
    return [os.path.join(data_root, 'cifar-10-batches-py', f)
            for f in TRAIN_FILES + TEST_FILES]


def _find_root(data_root: str) -> str:
    for root in (os.path.join(data_root, 'cifar-10-batches-py'), data_root):
        if all(os.path.isfile(os.path.join(root, f))
               for f in TRAIN_FILES + TEST_FILES):
            return root
    raise FileNotFoundError(
        f'CIFAR-10 not found under {os.path.abspath(data_root)!r}. Expected '
        f'the "CIFAR-10 python version" extracted there:\n'
        f'  {data_root}/cifar-10-batches-py/data_batch_1 ... data_batch_5\n'
        f'  {data_root}/cifar-10-batches-py/test_batch\n'
        f'(cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/'
        f'cifar.html; `tar xzf cifar-10-python.tar.gz -C {data_root}`). '
        f'sase_mm never downloads data; set data_root to where it is.')


class CIFARFormatError(ValueError):
    """A CIFAR batch file that is refused or not in the official layout."""


def _batch_globals() -> dict:
    return dict(numpy_globals(), **{'_codecs.encode': safe_codecs_encode})


def read_batch(path: str) -> dict:
    """One ``cifar-10-batches-py`` batch: ``dict(data=uint8 (N, 3072),
    labels=int64 (N,))``, read with the restricted unpickler.

    Raises:
        CIFARFormatError: naming ``path``, for a refused global or a layout
            other than the official one.
    """
    try:
        with open(path, 'rb') as f:
            entry = restricted_load(f, _batch_globals(), encoding='latin1')
    except UnsafePickleError as err:
        raise CIFARFormatError(
            f'refused CIFAR-10 batch {path!r}: {err}. The file was not '
            f'trusted and nothing in it was executed; the official batches '
            f'need only numpy arrays, lists, str and bytes. Re-extract '
            f'cifar-10-python.tar.gz.') from None
    except Exception as err:  # truncated / not a pickle
        raise CIFARFormatError(f'cannot read CIFAR-10 batch {path!r}: '
                               f'{type(err).__name__}: {err}') from None
    if not isinstance(entry, dict) or 'data' not in entry:
        raise CIFARFormatError(
            f'CIFAR-10 batch {path!r} is not in the official layout: expected '
            f'a dict with `data` (N x 3072 uint8) and `labels`, got '
            f'{type(entry).__name__}'
            f'{" with keys " + str(sorted(map(str, entry))) if isinstance(entry, dict) else ""}')  # noqa: E501
    data = entry['data']
    labels = entry.get('labels', entry.get('fine_labels'))
    if not isinstance(data, np.ndarray) or data.ndim != 2 or \
            data.shape[1] != 3 * 32 * 32:
        raise CIFARFormatError(
            f'CIFAR-10 batch {path!r}: `data` must be an (N, 3072) array, got '
            f'{type(data).__name__} {getattr(data, "shape", "")}')
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(
            data) or not all(isinstance(v, (int, np.integer))
                             for v in labels):
        raise CIFARFormatError(
            f'CIFAR-10 batch {path!r}: `labels` must be {len(data)} integers')
    return dict(data=np.asarray(data, dtype=np.uint8),
                labels=np.asarray(labels, dtype=np.int64))


def _read(root: str, files) -> tuple:
    images, labels = [], []
    for name in files:
        entry = read_batch(os.path.join(root, name))
        images.append(entry['data'])
        labels.extend(entry['labels'].tolist())
    data = np.concatenate(images).reshape(-1, 3, 32, 32)
    return torch.from_numpy(data), torch.tensor(labels, dtype=torch.int64)


@DATASETS.register_module()
class CIFAR10Search(InMemoryClassification):
    """CIFAR-10 with the training set split for a search.

    Args:
        data_root (str): directory holding ``cifar-10-batches-py`` (or that
            directory itself).
        split (str): ``'train'`` (weights half), ``'search'`` (alpha half),
            ``'trainval'`` (all 50,000) or ``'test'`` (the 10,000 test
            images).
        search_fraction (float): share of the training set in ``'search'``.
        split_seed (int): seed of the split (not of the sampling).
        augment (bool): random crop (padding 4) and horizontal flip.
    """

    LAYOUT = LAYOUT

    @classmethod
    def files_needed(cls, cfg) -> list:
        root = cfg.get('data_root', 'data/cifar10')
        return [('data_root', f) for f in _batch_files(root)]

    def __init__(self, data_root: str = 'data/cifar10', split: str = 'train',
                 search_fraction: float = 0.5, split_seed: int = 0,
                 augment: bool = False):
        if split not in SPLITS:
            raise ValueError(f'CIFAR10Search split must be one of {SPLITS}, '
                             f'got {split!r}')
        root = _find_root(data_root)
        images, labels = _read(root, TEST_FILES if split == 'test' else
                               TRAIN_FILES)
        images, labels = search_part(images, labels, split, search_fraction,
                                     split_seed)
        self.split = split
        super().__init__(images, labels, CIFAR10_MEAN, CIFAR10_STD,
                         CIFAR10_CLASSES, crop_padding=4 if augment else 0,
                         flip=augment)
