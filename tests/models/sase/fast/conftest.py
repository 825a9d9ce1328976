"""The ``path`` fixture of the fused-path tests (SASE, arXiv 2411.08333):
each runs through the compiled kernels (which must have built) and through
the PyTorch closed forms (kernels hidden: the fused node's, and the
excitations' convolutions and spatial map, which then run their modules)."""
import pytest
from fused_blocks import built_kernels

import sase_mm.models.sase.fast.fused.dispatch as dispatch_mod
import sase_mm.models.sase.fast.map_conv as map_conv_mod


@pytest.fixture(params=['kernels', 'torch'])
def path(request, monkeypatch):
    if request.param == 'kernels':
        built_kernels()
    else:
        monkeypatch.setattr(dispatch_mod, 'fused_kernels', lambda: None)
        monkeypatch.setattr(map_conv_mod, 'fused_kernels', lambda: None)
    return request.param
