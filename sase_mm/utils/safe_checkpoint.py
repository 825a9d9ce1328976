"""Let torch's safe ``weights_only=True`` loader read mmengine checkpoints.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch 2.6
that means ``weights_only=True``, which refuses the few non-tensor globals an
mmengine training checkpoint pickles: the message hub's ``HistoryBuffer``
(with its statistic functions, pickled as ``getattr(HistoryBuffer, 'min')``)
and the numpy arrays and scalars in it and in ``meta``. Rather than switching
the protection off, this allow-lists exactly those globals: everything else
(arbitrary classes or callables) is still refused.
"""
import numpy as np
import torch

_DONE = False


def _numpy_globals():
    core = getattr(np, '_core', None) or np.core  # numpy 2 / numpy 1
    out = [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray,
           np.dtype]
    # numpy >= 1.25 pickles dtypes through their concrete classes.
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes)
                if n.endswith('DType') and isinstance(getattr(dtypes, n), type)]
    return out


def mmengine_checkpoint_globals():
    """The globals an mmengine checkpoint needs (see module docstring)."""
    from mmengine.logging import HistoryBuffer
    return [HistoryBuffer, getattr] + _numpy_globals()


def allow_mmengine_checkpoints() -> None:
    """Registers :func:`mmengine_checkpoint_globals` with torch (idempotent)."""
    global _DONE
    if _DONE:
        return
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
    _DONE = True
