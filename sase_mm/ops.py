"""Deprecated: the fused block's kernels moved to
:mod:`sase_mm.models.sase.fast.kernels` (SASE, arXiv 2411.08333)."""
from .models.sase.fast.kernels import fused_kernels  # noqa: F401
