"""The SASE search space and its blocks.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333). ``space`` declares the four ordered operation sets (the
only home of operation names and of the alpha column order) and the six
edges; ``genotype`` reads and writes one operation per edge; ``dag`` is the
block's graph, written once; ``block`` is the fixed block ``SASE``;
``supernet`` the searchable ``SASESearch`` and the ownership of its one
alpha. ``fast/`` holds every optimised restatement of this maths (batched
search edges, the fused fixed block, the compiled kernels), each beside an
equivalence test.
"""
from .block import SASE
from .genotype import GENOTYPES, SASE_PAPER_GENOTYPE, Genotype
from .space import (CHANNEL_EXCITATION, CHANNEL_SQUEEZE, EDGES, NUM_EDGES,
                    NUM_OPS, OP_SETS, SPATIAL_EXCITATION, SPATIAL_SQUEEZE,
                    OpSet)
from .supernet import MixedOp, SASESearch, init_alphas

__all__ = [
    'CHANNEL_EXCITATION', 'CHANNEL_SQUEEZE', 'EDGES', 'GENOTYPES', 'Genotype',
    'MixedOp', 'NUM_EDGES', 'NUM_OPS', 'OP_SETS', 'OpSet', 'SASE',
    'SASESearch', 'SASE_PAPER_GENOTYPE', 'SPATIAL_EXCITATION',
    'SPATIAL_SQUEEZE', 'init_alphas'
]
