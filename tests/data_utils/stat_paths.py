"""The two paths of the statistics (SASE, arXiv 2411.08333): the compiled
kernels (``layers/compiled.py``; their absence is a failure unless
switched off with ``SASE_MM_NO_EXT=1``, which skips with that reason) and
the PyTorch formulas (kernels hidden, as after a failed build)."""
from .compiled_kernels import built

from sase_mm.models.layers import compiled

PATHS = ('kernels', 'torch')


def built_stats_kernels():
    """The compiled statistics kernels, which must have built."""
    return built(compiled.STATS)


def use_stats_path(path: str, monkeypatch):
    """Makes the statistics run through ``path`` (one of :data:`PATHS`)
    for the test."""
    if path == 'kernels':
        built_stats_kernels()
    else:
        monkeypatch.setattr(compiled.STATS, 'tried', True)
        monkeypatch.setattr(compiled.STATS, 'module', None)
