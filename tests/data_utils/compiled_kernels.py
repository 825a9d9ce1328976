"""The compiled kernels a test runs (SASE, arXiv 2411.08333): a set that
did not build is a failure, unless ``SASE_MM_NO_EXT=1`` switched the
kernels off on purpose, which skips the test with that reason."""
import pytest

from sase_mm.models.layers import compiled


def built(kernels: compiled.CompiledKernels):
    """The module of ``kernels`` (``compiled.STATS``, the fused block's
    ``FUSED``), which must have built."""
    if compiled.disabled():
        pytest.skip('SASE_MM_NO_EXT is set: compiled kernels switched off')
    module = kernels.load()
    assert module is not None, \
        f'the {kernels.title} did not build: {kernels.error}'
    return module
