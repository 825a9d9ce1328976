"""Random SASE genotypes: the random-search baseline.

SASE (arXiv 2411.08333) compares its searched block with "SASE (random)":
blocks whose six operations are drawn at random. :func:`sample_genotypes`
draws them, each edge's operation uniformly from that edge's declared set
(``space.py``), distinct and deterministic in the seed;
``tools/sample_genotypes.py`` writes them as genotype files and
``tools/analysis/evaluate_genotypes.py`` trains them (``random:K``).
"""
import random
from typing import List

from .genotype import Genotype
from .space import EDGES


def num_genotypes() -> int:
    """How many SASE blocks there are: the product of the edges' operation
    counts (7 ** 6 = 117,649)."""
    space = 1
    for e in EDGES:
        space *= len(e.op_set)
    return space


def sample_genotypes(num: int, seed: int) -> List[Genotype]:
    """``num`` distinct genotypes, each edge uniform over its operations.

    The same (num, seed) gives the same list, and a smaller ``num`` its
    prefix. Distinct: a draw equal to an earlier one is drawn again.

    Raises:
        ValueError: ``num`` is not an int in [1, :func:`num_genotypes`].
    """
    space = num_genotypes()
    if isinstance(num, bool) or not isinstance(num, int) or \
            not 1 <= num <= space:
        raise ValueError(f'the number of random genotypes must be an int in '
                         f'[1, {space}] (the number of SASE blocks), got '
                         f'{num!r}')
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < num:
        g = Genotype(e.op_set.names[rng.randrange(len(e.op_set))]
                     for e in EDGES)
        if g not in seen:
            seen.add(g)
            out.append(g)
    return out
