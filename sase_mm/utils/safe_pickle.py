"""Pickle without code: the inert globals a data or checkpoint file may name.

SASE (arXiv 2411.08333) reads two kinds of pickles that users hand it: the
CIFAR-10 batches of its search (``cifar-10-batches-py``) and mmengine
checkpoints (zip archives holding a pickle). A pickle is a program: every
``GLOBAL`` it names is imported and may be called, so a crafted file runs
code the moment it is loaded. This module owns the small set of globals such
files legitimately need, each either a type or a wrapper that checks its
arguments, and an :class:`pickle.Unpickler` that resolves nothing else.

Numpy arrays are rebuilt through ``_reconstruct`` (only plain ``ndarray``),
``dtype`` (never one that holds Python objects: an object array would carry
arbitrary objects) and ``scalar`` (likewise). :func:`check_inert` walks a
loaded object and refuses any array or dtype that holds objects after all,
so a dtype built by a crafted state is caught too.
"""
import io
import pickle
from typing import Any, Dict, Iterable, Tuple

import numpy as np

_CORE = getattr(np, '_core', None) or np.core  # numpy 2 / numpy 1
# The module names numpy 1 and numpy 2 write for the same functions.
_CORE_MODULES = ('numpy._core.multiarray', 'numpy.core.multiarray')


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global, or builds a value, outside the allow-list.

    Attributes:
        name (str): the refused ``module.name`` (or a description).
    """

    def __init__(self, message: str, name: str = ''):
        super().__init__(message)
        self.name = name


def _safe_dtype(*args):
    """``numpy.dtype(*args)`` refusing dtypes that hold Python objects."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafePickleError(
            f'refused numpy dtype {dtype!r}: it holds Python objects',
            'numpy.dtype(object)')
    return dtype


def _safe_reconstruct(subtype, shape, dtype):
    """``numpy._core.multiarray._reconstruct`` for plain ndarrays only."""
    if subtype is not np.ndarray:
        raise UnsafePickleError(
            f'refused numpy _reconstruct of {subtype!r}: only numpy.ndarray',
            'numpy._core.multiarray._reconstruct')
    return _CORE.multiarray._reconstruct(np.ndarray, shape, _as_dtype(dtype))


def _as_dtype(dtype):
    # _reconstruct's third argument is a type code (b'b'); keep it inert.
    if isinstance(dtype, (bytes, str)):
        return _safe_dtype(dtype)
    if isinstance(dtype, np.dtype):
        return _safe_dtype(dtype)
    raise UnsafePickleError(f'refused numpy dtype argument {dtype!r}',
                            'numpy._core.multiarray._reconstruct')


def _safe_scalar(dtype, *args):
    """``numpy._core.multiarray.scalar`` for dtypes without objects."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError(
            f'refused numpy scalar of dtype {dtype!r}', 'numpy.scalar(object)')
    return _CORE.multiarray.scalar(dtype, *args)


def safe_codecs_encode(obj, encoding='utf-8', errors='strict'):
    """``_codecs.encode`` for the text codecs pickle uses to write bytes."""
    import codecs
    if not isinstance(obj, str) or codecs.lookup(encoding).name not in (
            'latin-1', 'iso8859-1', 'utf-8'):
        raise UnsafePickleError(
            f'refused _codecs.encode({type(obj).__name__}, {encoding!r})',
            '_codecs.encode')
    return codecs.encode(obj, encoding, errors)


def numpy_dtype_classes() -> Tuple[type, ...]:
    """The concrete dtype classes (numpy >= 1.25) a dtype may be built as;
    every class except the object one."""
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is None:
        return ()
    return tuple(
        getattr(dtypes, n) for n in dir(dtypes)
        if n.endswith('DType') and isinstance(getattr(dtypes, n), type)
        and n != 'ObjectDType')


def numpy_globals() -> Dict[str, Any]:
    """``'module.name' -> object`` for what numpy arrays and scalars need."""
    out: Dict[str, Any] = {'numpy.ndarray': np.ndarray,
                           'numpy.dtype': _safe_dtype}
    for module in _CORE_MODULES:
        out[f'{module}._reconstruct'] = _safe_reconstruct
        out[f'{module}.scalar'] = _safe_scalar
    for cls in numpy_dtype_classes():
        out[f'{cls.__module__}.{cls.__qualname__}'] = cls
    return out


def check_inert(obj: Any, where: str = 'the file', _depth: int = 0) -> None:
    """Raises :class:`UnsafePickleError` if ``obj`` holds a numpy array,
    scalar or dtype that carries Python objects (containers are walked)."""
    if _depth > 200:
        raise UnsafePickleError(f'{where} is nested more than 200 levels '
                                f'deep', 'nesting')
    if isinstance(obj, np.dtype):
        bad = obj.hasobject
    elif isinstance(obj, (np.ndarray, np.generic)):
        bad = obj.dtype.hasobject
    else:
        bad = False
        if isinstance(obj, dict):
            children: Iterable = list(obj.keys()) + list(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children = obj
        else:
            children = getattr(obj, '__dict__', {}).values() if type(
                obj).__module__.startswith('mmengine') else ()
        for child in children:
            check_inert(child, where, _depth + 1)
    if bad:
        raise UnsafePickleError(
            f'{where} holds a numpy object array or dtype (Python objects '
            f'inside)', 'numpy object array')


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals it is given.

    Args:
        file: a binary file.
        allowed (dict): ``'module.name' -> object``; everything else raises
            :class:`UnsafePickleError` naming the global.
        **kwargs: as :class:`pickle.Unpickler` (e.g. ``encoding``).
    """

    def __init__(self, file, allowed: Dict[str, Any], **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = allowed

    def find_class(self, module: str, name: str):
        key = f'{module}.{name}'
        if key in self._allowed:
            return self._allowed[key]
        raise UnsafePickleError(
            f'refused global {key}: not on the allow-list '
            f'({", ".join(sorted(self._allowed))})', key)

    def persistent_load(self, pid):
        raise UnsafePickleError('refused a persistent id', 'persistent_load')


def restricted_load(file, allowed: Dict[str, Any], **kwargs) -> Any:
    """Unpickles ``file`` (binary file or bytes) with only ``allowed``."""
    if isinstance(file, (bytes, bytearray)):
        file = io.BytesIO(file)
    return RestrictedUnpickler(file, allowed, **kwargs).load()


def pickle_globals(data: bytes) -> Tuple[str, ...]:
    """The ``module.name`` globals a pickle names, read without running it.

    ``pickletools.genops`` only decodes opcodes. ``GLOBAL`` carries its
    name; protocol 4's ``STACK_GLOBAL`` takes the two strings on top of the
    stack, which may come from the memo, so pushed strings and the memo are
    followed (anything else pushed counts as a non-string).
    """
    import pickletools
    found, pushed, memo = [], [], {}
    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            if name == 'GLOBAL':
                found.append(arg.replace(' ', '.'))
                pushed.append(None)
            elif name == 'STACK_GLOBAL':
                if len(pushed) >= 2 and all(
                        isinstance(v, str) for v in pushed[-2:]):
                    found.append(f'{pushed[-2]}.{pushed[-1]}')
                pushed[-2:] = [None]
            elif name == 'MEMOIZE':
                memo[len(memo)] = pushed[-1] if pushed else None
            elif name in ('PUT', 'BINPUT', 'LONG_BINPUT'):
                memo[int(arg)] = pushed[-1] if pushed else None
            elif name in ('GET', 'BINGET', 'LONG_BINGET'):
                pushed.append(memo.get(int(arg)))
            elif name in ('PROTO', 'FRAME', 'STOP'):
                pass
            else:
                pushed.append(arg if isinstance(arg, str) else None)
    except Exception:  # a truncated or corrupt stream: report what was seen
        pass
    return tuple(dict.fromkeys(found))
