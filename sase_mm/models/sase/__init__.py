"""The SASE search space and its blocks.

SASE: Searching Architecture for Squeeze and Excitation operations (arXiv
2411.08333). ``space`` declares the four ordered operation sets (the only
home of operation names and of the alpha column order) and the six edges;
``genotype`` reads and writes one operation per edge; ``dag`` is the block's
graph, written once; ``block`` is the fixed block ``SASE``; ``supernet`` the
searchable ``SASESearch``; ``alphas`` the one alpha of a network (created,
and bound to its blocks after build) and ``mixing`` the one softmax of it
and the one way a block gets its mixing weights. ``fast/`` holds every
optimised restatement of this maths (batched search edges, the fused fixed
block, the compiled kernels), each beside an equivalence test.
"""
from .alphas import (ALPHA_INIT_STD, AlphaHolder, alpha_readers,
                     bind_alphas, init_alphas)
from .block import SASE
from .genotype import GENOTYPES, SASE_PAPER_GENOTYPE, Genotype
from .mixing import current_mix, mixing, softmax_mix
from .space import (CHANNEL_EXCITATION, CHANNEL_SQUEEZE, EDGES, NUM_EDGES,
                    NUM_OPS, OP_SETS, SPATIAL_EXCITATION, SPATIAL_SQUEEZE,
                    OpSet)
from .supernet import MixedOp, SASESearch

__all__ = [
    'ALPHA_INIT_STD', 'AlphaHolder', 'CHANNEL_EXCITATION', 'CHANNEL_SQUEEZE',
    'EDGES', 'GENOTYPES', 'Genotype', 'MixedOp', 'NUM_EDGES', 'NUM_OPS',
    'OP_SETS', 'OpSet', 'SASE', 'SASESearch', 'SASE_PAPER_GENOTYPE',
    'SPATIAL_EXCITATION', 'SPATIAL_SQUEEZE', 'alpha_readers', 'bind_alphas',
    'current_mix', 'init_alphas', 'mixing', 'softmax_mix'
]
