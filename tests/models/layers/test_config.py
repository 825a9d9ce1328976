"""The export flag of ``layers/config.py`` (SASE, arXiv 2411.08333)."""
import pytest

from sase_mm.models.layers import config
from sase_mm.models.layers.config import (exportable, is_exportable,
                                          set_exportable)


def test_off_by_default():
    assert is_exportable() is False


def test_set_returns_the_previous_value():
    try:
        assert set_exportable(True) is False
        assert is_exportable() is True
        assert set_exportable(True) is True
    finally:
        set_exportable(False)
    assert is_exportable() is False


def test_context_manager_restores_also_on_error():
    with exportable():
        assert is_exportable()
        with exportable(False):
            assert not is_exportable()
        assert is_exportable()
    assert not is_exportable()
    with pytest.raises(RuntimeError, match='inside'):
        with exportable():
            raise RuntimeError('inside')
    assert not is_exportable()


def test_non_bool_is_refused():
    with pytest.raises(TypeError, match='True or False'):
        set_exportable(1)
    assert config.is_exportable() is False
