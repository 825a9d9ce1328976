"""Metrics of sase_mm (SASE, arXiv 2411.08333)."""
from .accuracy import TopKAccuracy

__all__ = ['TopKAccuracy']
