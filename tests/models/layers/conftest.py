"""The ``stats_path`` fixture of the statistics tests (SASE, arXiv
2411.08333): each test that takes it runs through the compiled statistics
kernels and through the PyTorch formulas (``data_utils/stat_paths.py``)."""
import pytest
from data_utils.stat_paths import PATHS, use_stats_path


@pytest.fixture(params=PATHS)
def stats_path(request, monkeypatch):
    use_stats_path(request.param, monkeypatch)
    return request.param
