"""scikit-learn's handwritten digits as a small, shipped search dataset.

SASE (arXiv 2411.08333) searches on CIFAR-10; to run a real search anywhere
without downloading anything, this serves the 1,797 8 x 8 UCI handwritten
digits that scikit-learn ships (``sklearn.datasets.load_digits``), upscaled
(bilinear) to 32 x 32 and repeated to 3 channels so that the CIFAR
ResNet runs on them unchanged, and split into train / search / held-out
parts.
"""
from typing import Sequence

import torch
import torch.nn.functional as F

from ..registry import DATASETS
from .in_memory import InMemoryClassification
from .split import split_indices

SPLITS = ('train', 'search', 'val')


@DATASETS.register_module()
class DigitsSearch(InMemoryClassification):
    """The UCI digits, upscaled, split for a search.

    Args:
        split (str): ``'train'`` (weights), ``'search'`` (alpha) or
            ``'val'`` (held out).
        fractions (Sequence[float]): shares of train / search / val.
        split_seed (int): seed of the split.
        size (int): output image size (32).
        channels (int): output channels (the gray image repeated; 3).
        crop_padding (int): random-crop padding in output pixels (0: off).
    """

    def __init__(self, split: str = 'train',
                 fractions: Sequence[float] = (0.4, 0.4, 0.2),
                 split_seed: int = 0, size: int = 32, channels: int = 3,
                 crop_padding: int = 0):
        if split not in SPLITS:
            raise ValueError(f'DigitsSearch split must be one of {SPLITS}, '
                             f'got {split!r}')
        from sklearn.datasets import load_digits
        digits = load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.float32)
        labels = torch.as_tensor(digits.target, dtype=torch.int64)
        idx = split_indices(len(labels), SPLITS, fractions, split_seed)[split]
        # 0..16 gray levels -> [0, 1], upscaled once here.
        images = F.interpolate(images[idx, None] / 16., size=(size, size),
                               mode='bilinear', align_corners=False)
        self.split = split
        super().__init__(images.expand(-1, channels, -1, -1).contiguous(),
                         labels[idx], [0.5] * channels, [0.5] * channels,
                         [str(i) for i in range(10)],
                         crop_padding=crop_padding)
