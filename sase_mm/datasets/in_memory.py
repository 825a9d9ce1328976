"""An in-memory image classification dataset yielding tensors.

SASE (arXiv 2411.08333) searches on small images (CIFAR-10, 32 x 32) that
fit in memory. Samples are ``dict(inputs=(C, H, W) float32 normalised,
data_samples=int64 label)``; with ``collate_fn=dict(type='default_collate')``
a batch is ``dict(inputs=(B, C, H, W), data_samples=(B,))``, what
``DARTSSearch`` reads. Optional DARTS-style augmentation: random crop with
zero padding and horizontal flip (Liu et al., ICLR 2019, CIFAR-10 search).
"""
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


class InMemoryClassification(Dataset):
    """Images held as one tensor.

    Args:
        images: (N, C, H, W) uint8 or float tensor.
        labels: (N,) int64 tensor.
        mean, std: per channel, in the images' units; ``(x - mean) / std``.
        classes: class names (``metainfo['classes']``).
        crop_padding (int): random crop with this zero padding (0: off).
        flip (bool): random horizontal flip.
    """

    #: What the data looks like on disk, for the tools' pre-check message.
    LAYOUT = ''

    @classmethod
    def files_needed(cls, cfg) -> list:
        """The local files a config of this dataset reads, as
        ``[(config field, path)]``, checked before a run is built (the
        tools' pre-checks). In-memory data read from a package: none."""
        return []

    def __init__(self, images: torch.Tensor, labels: torch.Tensor,
                 mean: Sequence[float], std: Sequence[float],
                 classes: Sequence[str], crop_padding: int = 0,
                 flip: bool = False):
        super().__init__()
        self.images = images
        self.labels = labels.long()
        c = images.shape[1]
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(c, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(c, 1, 1)
        self.crop_padding = crop_padding
        self.flip = flip
        self.metainfo = dict(classes=tuple(classes))

    def full_init(self) -> None:
        """Nothing to load: the data is in memory. (mmengine's dataset
        wrappers, e.g. ``ConcatDataset``, call it.)"""

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> dict:
        x = (self.images[idx].float() - self.mean) / self.std
        if self.crop_padding:
            p = self.crop_padding
            h, w = x.shape[-2:]
            x = F.pad(x, (p, p, p, p))
            i, j = torch.randint(0, 2 * p + 1, (2, )).tolist()
            x = x[:, i:i + h, j:j + w]
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return dict(inputs=x.contiguous(), data_samples=self.labels[idx])
