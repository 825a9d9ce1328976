"""The fused SASE kernels' loader (arXiv 2411.08333): a first build says
what it compiles, that it happens once, how long it takes and where the
cache is, and says again when it is done; SASE_MM_NO_EXT=1 skips it. (The
loader itself, shared with the statistics kernels:
``tests/models/layers/test_compiled.py``.)"""
import os

import pytest

from sase_mm.models.layers import compiled
from sase_mm.models.sase.fast import kernels


@pytest.fixture
def fresh_state(monkeypatch):
    """The fused kernels not yet loaded (restored after the test)."""
    for name, value in (('tried', False), ('module', None), ('error', None)):
        monkeypatch.setattr(kernels.FUSED, name, value)


def test_first_build_is_announced(fresh_state, monkeypatch, capsys,
                                  tmp_path):
    import torch.utils.cpp_extension as ext
    built = object()
    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path))
    monkeypatch.delenv('SASE_MM_NO_EXT', raising=False)
    monkeypatch.setattr(ext, 'load', lambda *a, **k: built)
    assert kernels.fused_kernels() is built
    err = capsys.readouterr().err
    assert 'compiling the fused SASE CPU kernels' in err
    assert 'once' in err and 'about a minute' in err
    assert str(tmp_path) in err and 'SASE_MM_NO_EXT=1' in err
    assert 'fused SASE CPU kernels compiled in' in err


def test_build_is_keyed_and_named_as_before(fresh_state, monkeypatch,
                                            tmp_path):
    """The build directory is ``sase_mm_fused_<hash>`` holding a copy of
    ``sase_fused.cpp``: builds cached before the loader was shared are
    found again."""
    import torch.utils.cpp_extension as ext
    calls = []
    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path))
    monkeypatch.delenv('SASE_MM_NO_EXT', raising=False)
    monkeypatch.setattr(ext, 'load',
                        lambda name, sources, **k: calls.append(
                            (name, sources)) or object())
    kernels.fused_kernels()
    (name, sources), = calls
    assert name.startswith('sase_mm_fused_') and len(name) == 30
    assert sources == [os.path.join(tmp_path, 'sase_mm', name,
                                    'sase_fused.cpp')]


def test_cached_build_is_silent(fresh_state, monkeypatch, capsys, tmp_path):
    import torch.utils.cpp_extension as ext
    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path))
    monkeypatch.delenv('SASE_MM_NO_EXT', raising=False)
    monkeypatch.setattr(ext, 'load', lambda *a, **k: object())
    monkeypatch.setattr(compiled, 'is_built', lambda *a: True)
    assert kernels.fused_kernels() is not None
    assert capsys.readouterr().err == ''


def test_no_ext_skips_the_build(fresh_state, monkeypatch):
    import torch.utils.cpp_extension as ext

    def fail(*a, **k):
        raise AssertionError('must not build')

    monkeypatch.setattr(ext, 'load', fail)
    monkeypatch.setenv('SASE_MM_NO_EXT', '1')
    assert kernels.fused_kernels() is None
