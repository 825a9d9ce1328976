"""Layer configuration: the export flag the attention layers read.

SASE (arXiv 2411.08333) and the attention zoo run several computations in a
fast form that a tracing exporter (``torch.onnx.export``, TorchScript)
cannot keep general: hand-written autograd Functions (the exporter sees an
opaque node), batch-grouped convolutions (``groups=B`` is frozen at the
export batch) and same-size shortcuts (a Python comparison of shapes is
frozen at the export size). Each such layer also has a plain form that
computes the same values with ordinary operators; while the flag is set,
the layers pick the plain form themselves. As timm's ``layers/config.py``:
:func:`set_exportable` / :func:`is_exportable`, and the context manager
:func:`exportable` that sets the flag for a block of code and restores it.

The flag is process-wide (a module global, as timm's), read at each
forward: set it around the export, not while another thread trains.
"""
from contextlib import contextmanager
from typing import Iterator

_EXPORTABLE = False


def is_exportable() -> bool:
    """Whether the layers run their plain, exportable forms."""
    return _EXPORTABLE


def set_exportable(mode: bool) -> bool:
    """Sets the flag (see the module doc); returns its previous value.

    Raises:
        TypeError: ``mode`` is not a bool.
    """
    global _EXPORTABLE
    if not isinstance(mode, bool):
        raise TypeError(f'set_exportable takes True or False, got {mode!r} '
                        f'({type(mode).__name__})')
    previous, _EXPORTABLE = _EXPORTABLE, mode
    return previous


@contextmanager
def exportable(mode: bool = True) -> Iterator[None]:
    """Within: :func:`is_exportable` is ``mode``; restored on exit, also
    when the body raises."""
    previous = set_exportable(mode)
    try:
        yield
    finally:
        set_exportable(previous)
