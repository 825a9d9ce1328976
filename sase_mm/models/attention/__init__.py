"""SASE's search space: operation sets, genotype, searchable and fixed block."""
from .arch_params import init_alphas
from .genotype import GENOTYPES, SASE_PAPER_GENOTYPE, Genotype
from .op_sets import (CHANNEL_EXCITATION, CHANNEL_SQUEEZE, EDGES, NUM_EDGES,
                      NUM_OPS, OP_SETS, SPATIAL_EXCITATION, SPATIAL_SQUEEZE,
                      OpSet)
from .sase_block import SASE
from .search_block import MixedOp, SASESearch

__all__ = [
    'CHANNEL_EXCITATION', 'CHANNEL_SQUEEZE', 'EDGES', 'GENOTYPES', 'Genotype',
    'MixedOp', 'NUM_EDGES', 'NUM_OPS', 'OP_SETS', 'OpSet', 'SASE',
    'SASESearch', 'SASE_PAPER_GENOTYPE', 'SPATIAL_EXCITATION',
    'SPATIAL_SQUEEZE', 'init_alphas'
]
