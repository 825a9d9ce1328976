"""SearchSplit: one half of any mm dataset, by deterministic indices.

SASE (arXiv 2411.08333) searches with DARTS (Liu et al., ICLR 2019), which
splits the training set into a half that trains the weights and a half that
trains the architecture weights alpha (docs/spec.md section 3). This wrapper
does that for any dataset an mmengine config can build (an mmpretrain
``CustomDataset`` / ``ImageNet`` folder, an mmdet ``CocoDataset``, ...), so
that ``DARTSLoop``'s two dataloaders take their halves from one dataset
config::

    dataset=dict(type='sase_mm.SearchSplit', part='train',  # or 'search'
                 fraction=0.5, seed=0, dataset=dict(type='CocoDataset', ...))

The indices come from :func:`~.split.split_indices` (the size, the fraction
and the seed alone), so every process and every resumed run sees the same
halves, and the two parts are disjoint and cover the dataset. The wrapped
dataset's ``metainfo`` (classes, palette) and ``get_data_info`` (what mmdet's
aspect-ratio sampler reads) answer for the part.
"""
from typing import Union

from torch.utils.data import Dataset

from ..registry import DATASETS
from .split import split_indices

PARTS = ('train', 'search')


@DATASETS.register_module()
class SearchSplit(Dataset):
    """The ``part`` of ``dataset``: ``fraction`` of it for 'train' (the
    weights), the rest for 'search' (alpha).

    Args:
        dataset (dict | Dataset): the dataset to split, a config (built from
            the registry, so ``type='CocoDataset'`` resolves in the config's
            scope) or a dataset.
        part (str): ``'train'`` or ``'search'``.
        fraction (float): the train part's share, in (0, 1) (0.5: DARTS's
            halves).
        seed (int): seed of the permutation (the same for both parts).

    Raises:
        ValueError: a bad part or fraction, or a dataset too small to give
            both parts at least one sample.
    """

    def __init__(self, dataset: Union[dict, Dataset], part: str = 'train',
                 fraction: float = 0.5, seed: int = 0):
        super().__init__()
        if part not in PARTS:
            raise ValueError(f'SearchSplit part must be one of {PARTS} '
                             f'(the weights\' or alpha\'s half), got '
                             f'{part!r}')
        if not 0 < float(fraction) < 1:
            raise ValueError(f'SearchSplit fraction (the train part\'s '
                             f'share) must be in (0, 1), got {fraction!r}')
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) \
            else dataset
        self.part, self.fraction, self.seed = part, float(fraction), seed
        n = len(self.dataset)
        parts = split_indices(n, PARTS, (self.fraction, 1 - self.fraction),
                              seed)
        if any(len(v) == 0 for v in parts.values()):
            raise ValueError(
                f'{type(self.dataset).__name__} has {n} sample(s), too few to '
                f'split into a train part ({self.fraction:g}) and a search '
                f'part ({1 - self.fraction:g}) with at least one sample each: '
                f'use a larger dataset (a search needs a batch of each half '
                f'per iteration) or another fraction')
        self.indices = parts[part].tolist()

    @property
    def metainfo(self) -> dict:
        """The wrapped dataset's metainfo (classes, palette, ...)."""
        return getattr(self.dataset, 'metainfo', {})

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int):
        return self.dataset[self.indices[idx]]

    def get_data_info(self, idx: int) -> dict:
        """The wrapped dataset's annotation of the part's ``idx``-th
        sample (mmdet's aspect-ratio batch sampler reads width / height)."""
        return self.dataset.get_data_info(self.indices[idx])

    def full_init(self) -> None:
        """Nothing to do: built in ``__init__`` (mmengine's wrappers call
        it)."""

    def __repr__(self) -> str:
        return (f'SearchSplit(part={self.part!r}, fraction={self.fraction}, '
                f'seed={self.seed}, {len(self)} of {len(self.dataset)} '
                f'samples of {type(self.dataset).__name__})')
