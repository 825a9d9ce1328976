"""The fixed SASE blocks and the kernel check of the fused-path tests (SASE,
arXiv 2411.08333): ``tests/models/sase/fast/test_fused.py`` (the node) and
``test_fused_op.py`` (the operator) compare the same blocks, through the
same two paths (``conftest.py``'s ``path``)."""
import torch
from data_utils.compiled_kernels import built

from sase_mm.models.sase import SASE
from sase_mm.models.sase.fast import kernels as kernels_mod

#: The paper's block (docs/spec.md section 4), as operation names.
PAPER = ['gap_gmp', 'fc', 'affine', 'l4_pool', 'gap', 'conv_3x3_x2']


def perturbed_sase(genotype=PAPER, c=16, dtype=torch.float64, seed=0,
                   **kwargs):
    """``SASE(c, genotype, spatial_size=(5, 6), **kwargs)`` in ``dtype``,
    every parameter moved off its symmetric init (by 0.2 N(0, 1)) so that
    no gradient term cancels by symmetry."""
    torch.manual_seed(seed)
    block = SASE(c, genotype=genotype, spatial_size=(5, 6), **kwargs).to(dtype)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return block


def built_kernels():
    """The compiled fused-block kernels, which must have built."""
    return built(kernels_mod.FUSED)
