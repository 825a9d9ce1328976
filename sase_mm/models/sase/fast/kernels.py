"""The compiled CPU kernels of the fused SASE block.

SASE (arXiv 2411.08333). The source is ``csrc/sase_fused.cpp``; it is
built and loaded as every compiled source of sase_mm is
(``layers/compiled.py``: compiled on first use, about a minute, cached
under ``$TORCH_EXTENSIONS_DIR/sase_mm`` by a hash of the source, the torch
and Python versions and the flags; the build announces itself on stderr;
``SASE_MM_NO_EXT=1`` skips it). Without the kernels the fused block runs
the same formulas with PyTorch operators; the fused node's ``dispatch.py``
decides when they run. ``tools/setup_env.sh`` builds them.
"""
import os
from typing import Optional

from ...layers.compiled import CompiledKernels

FUSED = CompiledKernels(
    'sase_mm_fused',
    os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc',
                 'sase_fused.cpp'),
    'fused SASE CPU kernels', short='fused CPU kernels')


def fused_kernels() -> Optional[object]:
    """The compiled module (built on first use), or None when disabled
    (``SASE_MM_NO_EXT=1``) or unavailable."""
    return FUSED.load()
