"""Deterministic splits of one labelled set into named parts.

SASE (arXiv 2411.08333) searches with DARTS, which splits the training set
into a half that trains the weights and a half that trains the architecture
weights (docs/spec.md section 3); a demo also holds out a part for testing. The
split depends only on the size, the fractions and the seed, so every process
and every resumed run sees the same parts.
"""
from typing import Dict, Sequence

import torch


def split_indices(n: int, names: Sequence[str], fractions: Sequence[float],
                  seed: int = 0) -> Dict[str, torch.Tensor]:
    """Disjoint index sets covering ``range(n)``, in the given proportions.

    Args:
        n: the number of samples.
        names: the part names, e.g. ``('train', 'search')``.
        fractions: one per name, positive, summing to 1; the last part takes
            the rounding remainder.
        seed: seed of the random permutation.

    Returns:
        dict: name -> sorted (k,) int64 indices.
    """
    if len(names) != len(fractions) or any(f <= 0 for f in fractions) or \
            abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f'split fractions must be positive, one per part '
                         f'{list(names)}, summing to 1; got {list(fractions)}')
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out, start = {}, 0
    for i, (name, frac) in enumerate(zip(names, fractions)):
        stop = n if i == len(names) - 1 else start + int(round(frac * n))
        out[name] = perm[start:stop].sort().values
        start = stop
    return out


def search_part(images, labels, split: str, search_fraction: float,
                seed: int):
    """The ``'train'`` / ``'search'`` part of a training set (the DARTS
    halves, ``search_fraction`` of it for alpha), or the set itself for any
    other split (``'test'``).

    Args:
        images: (N, ...) array; labels: (N,) array.
        split: ``'train'``, ``'search'`` or another split name.
        search_fraction: the search part's share, in (0, 1).
        seed: seed of the split.

    Returns:
        (images, labels) of the part.
    """
    if split not in ('train', 'search'):
        return images, labels
    idx = split_indices(len(labels), ('train', 'search'),
                        (1 - search_fraction, search_fraction), seed)[split]
    return images[idx], labels[idx]
