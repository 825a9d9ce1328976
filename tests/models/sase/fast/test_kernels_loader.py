"""The fused SASE kernels' loader (arXiv 2411.08333): a first build says
what it compiles, that it happens once, how long it takes and where the
cache is, and says again when it is done; SASE_MM_NO_EXT=1 skips it."""
import pytest

from sase_mm.models.sase.fast import kernels


@pytest.fixture
def fresh_state(monkeypatch):
    monkeypatch.setattr(kernels, '_state', {'tried': False, 'module': None,
                                            'error': None})


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
    assert 'compiled in' in err


def test_cached_build_is_silent(fresh_state, monkeypatch, capsys, tmp_path):
    import torch.utils.cpp_extension as ext
    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path))
    monkeypatch.delenv('SASE_MM_NO_EXT', raising=False)
    monkeypatch.setattr(ext, 'load', lambda *a, **k: object())
    monkeypatch.setattr(kernels, '_is_built', lambda *a: True)
    assert kernels.fused_kernels() is not None
    assert capsys.readouterr().err == ''


def test_no_ext_skips_the_build(fresh_state, monkeypatch):
    import torch.utils.cpp_extension as ext

    def fail(*a, **k):
        raise AssertionError('must not build')

    monkeypatch.setattr(ext, 'load', fail)
    monkeypatch.setenv('SASE_MM_NO_EXT', '1')
    assert kernels.fused_kernels() is None
