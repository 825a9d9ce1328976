"""The one checkpoint loader: torch's ``weights_only=True``, allow-list scoped.

SASE (arXiv 2411.08333) users load checkpoints they did not make every day:
the authors' weights, model zoos, colleagues' runs. A checkpoint is a pickle,
and a pickle runs code unless its loader refuses the globals it names.
torch's ``weights_only=True`` loader refuses every global outside a short
list of tensor rebuilders. mmengine's training checkpoints name a few more:
the message hub's ``HistoryBuffer``, its statistic methods (pickled as
``getattr(HistoryBuffer, 'min')``) and numpy arrays and scalars.

:func:`load_checkpoint` is the only place this project loads a checkpoint.
It allows exactly those, and only inside a
``torch.serialization.safe_globals`` context around its own load, so
importing sase_mm leaves ``torch.load`` as strict as before:

* ``getattr`` itself is never allowed: with it a pickle walks from any
  allowed object to ``builtins.eval`` (``getattr(getattr, '__self__')``
  is the builtins module). The name ``builtins.getattr`` is mapped to
  :func:`history_buffer_getattr`, which resolves only the statistic
  methods of ``HistoryBuffer`` and raises for anything else;
* numpy arrays and scalars come through the checking wrappers of
  :mod:`sase_mm.utils.safe_pickle` (no object arrays), and the loaded value
  is checked once more with :func:`~sase_mm.utils.safe_pickle.check_inert`.

A refused file raises :class:`UntrustedCheckpointError`, naming the file and
the global; a user who trusts the file converts it once with
``tools/trust_checkpoint.py SRC DST --i-trust-this-file``
(:func:`resave_trusted`). :func:`install_mmengine_loader` makes mmengine's
local-file loader (``Runner.resume``, ``load_from``, ``init_cfg=dict(
type='Pretrained')``, ``load_checkpoint``) this function.
"""
import os
import pickle
import re
import zipfile
from typing import Any, List, Optional, Sequence, Tuple

import torch

from .atomic import atomic_torch_save
from .checkpoint_files import verify
from .safe_pickle import (UnsafePickleError, check_inert, numpy_globals,
                          pickle_globals)

#: The statistic methods ``HistoryBuffer`` pickles as ``getattr(cls, name)``.
HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')
TRUST_TOOL = 'tools/trust_checkpoint.py'


def history_buffer_getattr(obj: Any, name: str) -> Any:
    """What ``builtins.getattr`` means inside a checkpoint: only
    ``getattr(HistoryBuffer, <statistic>)``; anything else raises."""
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise UnsafePickleError(
        f'refused getattr({_short(obj)}, {name!r}): a checkpoint may use '
        f'getattr only for HistoryBuffer\'s statistics '
        f'({", ".join(HISTORY_BUFFER_METHODS)})', 'builtins.getattr')


def _short(obj: Any) -> str:
    if obj is history_buffer_getattr:  # what the file calls getattr
        return 'getattr'
    text = getattr(obj, '__qualname__', None) or type(obj).__name__
    return f'<{text}>'


def checkpoint_globals() -> List[Tuple[Any, str]]:
    """``(object, 'module.name')`` pairs an mmengine checkpoint may name, for
    ``torch.serialization.safe_globals`` (see the module docstring)."""
    from mmengine.logging import HistoryBuffer
    pairs = [(HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
             (history_buffer_getattr, 'builtins.getattr')]
    pairs += [(obj, name) for name, obj in numpy_globals().items()]
    return pairs


def _allowed_names() -> set:
    from torch._weights_only_unpickler import _get_allowed_globals
    return set(_get_allowed_globals()) | {n for _, n in checkpoint_globals()}


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint names code outside the allow-list; nothing was run.

    Attributes:
        path (str): the file.
        refused (str): the global (or construct) refused first.
        others (tuple): other globals of the file outside the allow-list.
    """

    def __init__(self, path: str, refused: Optional[str] = None,
                 detail: str = '', others: Sequence[str] = ()):
        if refused is None:  # re-raised with a prefixed message (mmengine)
            self.path, self.refused, self.others = '', 'unknown', ()
            super().__init__(path)
            return
        self.path, self.refused, self.others = path, refused, tuple(others)
        also = (f' It also names {", ".join(self.others)}.'
                if self.others else '')
        safe = _suggest_output(path)
        super().__init__(
            f'refused to load checkpoint {path!r}: it uses the global '
            f'`{refused}` in a way that is refused ({detail}).{also}\n'
            f'The file was not trusted and nothing in it was executed '
            f'(torch.load with weights_only=True).\n'
            f'If you trust this file (you made it, or it comes from a source '
            f'you trust), convert it once, from a sase_mm checkout:\n'
            f'    python {TRUST_TOOL} {path} {safe} --i-trust-this-file\n'
            f'and load {safe} instead.')


class CheckpointReadError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, not a checkpoint)."""


def _suggest_output(path: str) -> str:
    root, ext = os.path.splitext(path)
    return f'{root}.trusted{ext or ".pth"}'


def _data_pickle(path: str) -> Optional[bytes]:
    """The pickle inside a torch zip checkpoint (or the file itself)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.endswith('data.pkl')]
                return z.read(names[0]) if names else None
        with open(path, 'rb') as f:
            return f.read(64 << 20)
    except Exception:
        return None


def _py3_name(name: str) -> str:
    """A global's Python 3 name (protocol 2 pickles write Python 2's)."""
    import _compat_pickle
    module, _, attr = name.rpartition('.')
    return f'{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{attr}'


def _refusal(path: str, message: str) -> UntrustedCheckpointError:
    """The error for a refused load, naming the first refused global."""
    data = _data_pickle(path)
    allowed = _allowed_names()
    others = [g for g in (pickle_globals(data) if data else ())
              if g not in allowed and _py3_name(g) not in allowed]
    ours = re.search(r'refused (getattr\([^\n]*?\)):', message)
    torch_global = re.search(r'GLOBAL (\S+)', message)
    if ours:
        refused, detail = 'builtins.getattr', f'it calls {ours.group(1)}; ' \
            f'a checkpoint may call getattr only for HistoryBuffer\'s ' \
            f'statistics'
    elif 'numpy object array' in message or 'holds Python objects' in \
            message or 'refused numpy' in message:
        refused, detail = 'numpy.dtype(object)', 'numpy arrays of Python ' \
            'objects are refused'
    elif others:
        refused, detail = others[0], 'not on the weights_only allow-list'
    elif torch_global:
        refused, detail = torch_global.group(1), \
            'not on the weights_only allow-list'
    else:
        refused, detail = 'unknown', message.splitlines()[0][:300]
    return UntrustedCheckpointError(path, refused, detail,
                                    [g for g in others if g != refused])


def load_checkpoint(filename: str, map_location: Any = 'cpu') -> Any:
    """Loads a checkpoint with ``torch.load(weights_only=True)`` and the
    allow-list of :func:`checkpoint_globals`, scoped to this load.

    Args:
        filename: a local path (``~`` expanded).
        map_location: as ``torch.load``'s.

    A SHA-256 written beside the file (``<file>.sha256``, as sase_mm's
    checkpoint hook writes it) is checked first.

    Raises:
        FileNotFoundError: no such file.
        CheckpointIntegrityError: the file does not match its SHA-256.
        UntrustedCheckpointError: the file names a refused global.
        CheckpointReadError: the file is not a readable checkpoint.
    """
    path = os.path.expanduser(str(filename))
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    verify(path)
    try:
        with torch.serialization.safe_globals(checkpoint_globals()):
            ckpt = torch.load(path, map_location=map_location,
                              weights_only=True)
        check_inert(ckpt, f'checkpoint {path!r}')
    except pickle.UnpicklingError as err:
        raise _refusal(path, str(err)) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            KeyError, AttributeError, TypeError) as err:
        raise CheckpointReadError(
            f'cannot read checkpoint {path!r}: {type(err).__name__}: '
            f'{str(err).splitlines()[0][:300] if str(err) else ""} (is it '
            f'truncated, or not a torch checkpoint?)') from err
    return ckpt


def _mmengine_local_loader(filename: str, map_location=None) -> Any:
    """mmengine's ``CheckpointLoader`` scheme for local paths."""
    return load_checkpoint(filename, map_location)


def _download(url: str) -> str:
    """The local copy of ``url`` in torch's hub cache
    (``$TORCH_HOME/hub/checkpoints``, as ``torch.hub`` keeps it), fetched by
    rank 0 when missing."""
    from urllib.parse import urlparse

    from mmengine.dist import get_dist_info
    from torch.hub import download_url_to_file, get_dir
    cached = os.path.join(get_dir(), 'checkpoints',
                          os.path.basename(urlparse(url).path))
    rank, world_size = get_dist_info()
    if rank == 0 and not os.path.isfile(cached):
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        download_url_to_file(url, cached, progress=False)
    if world_size > 1:
        torch.distributed.barrier()
    return cached


def _mmengine_url_loader(filename: str, map_location=None) -> Any:
    """``http(s)://``, and the model-zoo names mmengine maps to URLs
    (``torchvision://``, ``open-mmlab://``, ``mmcls://``): downloaded as
    mmengine does, then read by :func:`load_checkpoint`. mmengine's own
    loader for them uses ``torch.hub.load_state_dict_from_url``, whose
    default is ``weights_only=False``."""
    from mmengine.runner import checkpoint as mm
    url = filename
    for prefix, table in (('modelzoo://', mm.get_torchvision_models),
                          ('torchvision://', mm.get_torchvision_models),
                          ('open-mmlab://', mm.get_external_models),
                          ('openmmlab://', mm.get_external_models),
                          ('mmcls://', mm.get_mmcls_models)):
        if filename.startswith(prefix):
            name = filename[len(prefix):]
            if prefix.startswith('open'):
                name = mm.get_deprecated_model_names().get(name, name)
            url = table()[name]
            if not url.startswith(('http://', 'https://')):  # a local file
                return load_checkpoint(os.path.join(mm._get_mmengine_home(),
                                                    url), map_location)
            break
    return load_checkpoint(_download(url), map_location)


_URL_PREFIXES = ('http://', 'https://', 'modelzoo://', 'torchvision://',
                 'open-mmlab://', 'openmmlab://', 'mmcls://')


def install_mmengine_loader() -> None:
    """Makes mmengine load checkpoints with :func:`load_checkpoint`: local
    paths, URLs and model-zoo names (idempotent). Only mmengine's loader
    changes; ``torch.load`` and its allow-list do not."""
    from mmengine.runner.checkpoint import CheckpointLoader
    if CheckpointLoader._schemes.get('') is _mmengine_local_loader:
        return
    CheckpointLoader.register_scheme(prefixes='',
                                     loader=_mmengine_local_loader,
                                     force=True)
    CheckpointLoader.register_scheme(prefixes=_URL_PREFIXES,
                                     loader=_mmengine_url_loader, force=True)


# ------------------------------------------------------------ trusted files
_INERT_TYPES = (torch.Tensor, torch.Size, torch.dtype, torch.device, int,
                float, complex, bool, str, bytes, type(None))


def _to_inert(obj: Any, where: str, dropped: List[str]) -> Any:
    import numpy as np
    from mmengine.logging import HistoryBuffer
    if isinstance(obj, _INERT_TYPES):
        return obj
    if isinstance(obj, (np.ndarray, np.generic)):
        if obj.dtype.hasobject:
            dropped.append(f'{where} (numpy object array)')
            return None
        return obj
    if isinstance(obj, HistoryBuffer):
        buf = HistoryBuffer(max_length=obj.max_length)
        buf._log_history = np.asarray(obj._log_history, dtype=float)
        buf._count_history = np.asarray(obj._count_history, dtype=float)
        return buf
    if isinstance(obj, dict):
        out = type(obj)() if type(obj) in (dict, __import__(
            'collections').OrderedDict) else {}
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool, tuple, type(None))):
                dropped.append(f'{where}[{k!r}] (key of type '
                               f'{type(k).__name__})')
                continue
            out[k] = _to_inert(v, f'{where}[{k!r}]', dropped)
        if hasattr(obj, '_metadata'):  # state_dict version metadata
            out._metadata = _to_inert(dict(obj._metadata), where, dropped)
        return out
    if isinstance(obj, (list, tuple)):
        items = [_to_inert(v, f'{where}[{i}]', dropped)
                 for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    dropped.append(f'{where} ({type(obj).__module__}.'
                   f'{type(obj).__qualname__})')
    return None


def resave_trusted(src: str, dst: str) -> List[str]:
    """Re-saves a checkpoint the user trusts in a form the safe loader reads.

    **Runs the code in ``src``** (``torch.load(weights_only=False)``): only
    for files the user trusts, on their explicit request. Keeps tensors,
    numbers, strings, containers, numpy arrays without objects and
    ``HistoryBuffer`` s; drops everything else (listed in the return value).
    Writes ``dst`` atomically and checks it with :func:`load_checkpoint`.
    """
    obj = torch.load(src, map_location='cpu', weights_only=False)
    dropped: List[str] = []
    clean = _to_inert(obj, 'checkpoint', dropped)
    atomic_torch_save(clean, dst)
    load_checkpoint(dst)
    return dropped
