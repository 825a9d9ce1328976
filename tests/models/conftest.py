"""The ``device`` fixture of the equivalence tests (SASE, arXiv 2411.08333):
the block tests under sase/, the hypergradient tests under
search/ and the half-precision tests (test_half_precision.py). Each runs
on the CPU and, where a GPU is present, on CUDA; without one the CUDA case
is skipped with that reason (never a silent pass)."""
import pytest
import torch


@pytest.fixture(params=['cpu', pytest.param('cuda', marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA device'))])
def device(request):
    return request.param
