"""CIFAR-100 (python version) split for a DARTS search.

SASE (arXiv 2411.08333) searches on CIFAR-10 (docs/spec.md section 3); the
same search on CIFAR-100 (``configs/search/sase_r20_cifar100.py``) reads the
"CIFAR-100 python version" (``cifar-100-python/train``, ``test``, ``meta``)
with the 100 fine labels, through the same restricted unpickler as CIFAR-10
(``cifar10.read_batch``: only numpy arrays, lists, str and bytes are
resolved, a crafted file is refused with its name). Never downloads.
"""
import os

from ..registry import DATASETS
from ..utils.safe_pickle import UnsafePickleError, restricted_load
from .cifar10 import SPLITS, CIFARFormatError, _batch_globals, _read
from .in_memory import InMemoryClassification
from .split import search_part

# Per-channel statistics of the training set, in 0..255 units.
CIFAR100_MEAN = (129.304, 124.070, 112.434)
CIFAR100_STD = (68.170, 65.392, 70.418)
FILES = ('train', 'test', 'meta')
FOLDER = 'cifar-100-python'
LAYOUT = ('the "CIFAR-100 python version" (cifar-100-python.tar.gz from '
          'https://www.cs.toronto.edu/~kriz/cifar.html, extracted):\n'
          '  <data_root>/cifar-100-python/train\n'
          '  <data_root>/cifar-100-python/test\n'
          '  <data_root>/cifar-100-python/meta\n'
          '(`tar xzf cifar-100-python.tar.gz -C <data_root>`; sase_mm never '
          'downloads data)')


def _root(data_root: str) -> str:
    for root in (os.path.join(data_root, FOLDER), data_root):
        if all(os.path.isfile(os.path.join(root, f)) for f in FILES):
            return root
    raise FileNotFoundError(
        f'CIFAR-100 not found under {os.path.abspath(data_root)!r}. Expected '
        f'{LAYOUT}. Set data_root to where it is.')


def read_classes(path: str) -> tuple:
    """The 100 fine label names of ``meta`` (restricted unpickler)."""
    try:
        with open(path, 'rb') as f:
            meta = restricted_load(f, _batch_globals(), encoding='latin1')
    except UnsafePickleError as err:
        raise CIFARFormatError(f'refused CIFAR-100 meta file {path!r}: '
                               f'{err}; nothing in it was executed') from None
    except Exception as err:
        raise CIFARFormatError(f'cannot read CIFAR-100 meta file {path!r}: '
                               f'{type(err).__name__}: {err}') from None
    names = meta.get('fine_label_names') if isinstance(meta, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str)
                                              for n in names):
        raise CIFARFormatError(f'CIFAR-100 meta file {path!r} has no list '
                               f'of `fine_label_names`')
    return tuple(names)


@DATASETS.register_module()
class CIFAR100Search(InMemoryClassification):
    """CIFAR-100 with the training set split for a search.

    Args: as :class:`~.cifar10.CIFAR10Search` (``data_root`` holds
    ``cifar-100-python``, or is it).
    """

    LAYOUT = LAYOUT

    @classmethod
    def files_needed(cls, cfg) -> list:
        root = cfg.get('data_root', 'data/cifar100')
        for base in (os.path.join(root, FOLDER), root):
            if all(os.path.isfile(os.path.join(base, f)) for f in FILES):
                break
        else:
            base = os.path.join(root, FOLDER)
        return [('data_root', os.path.join(base, f)) for f in FILES]

    def __init__(self, data_root: str = 'data/cifar100',
                 split: str = 'train', search_fraction: float = 0.5,
                 split_seed: int = 0, augment: bool = False):
        if split not in SPLITS:
            raise ValueError(f'CIFAR100Search split must be one of {SPLITS}, '
                             f'got {split!r}')
        root = _root(data_root)
        images, labels = _read(root, ['test' if split == 'test' else 'train'])
        images, labels = search_part(images, labels, split, search_fraction,
                                     split_seed)
        self.split = split
        super().__init__(images, labels, CIFAR100_MEAN, CIFAR100_STD,
                         read_classes(os.path.join(root, 'meta')),
                         crop_padding=4 if augment else 0, flip=augment)
