"""Compiled CPU kernels of the fused SASE block (``csrc/sase_fused.cpp``).

SASE (arXiv 2411.08333). The kernels are compiled on first use with
``torch.utils.cpp_extension.load`` (ninja and a C++20 compiler with OpenMP,
which ATen's ``parallel_for`` uses; about a minute) and cached under
``$TORCH_EXTENSIONS_DIR/sase_mm`` (default
``~/.cache/torch_extensions/sase_mm``), in a directory named by a hash of
the source, the torch and Python versions and the flags: a change of any of
them builds anew, and other checkouts of the same source reuse the build.
``tools/setup_env.sh`` builds them. Without them the fused block runs the
same formulas with PyTorch operators (``SASE_MM_NO_EXT=1`` forces that).
"""
import hashlib
import logging
import os
import sys
import threading
import warnings
from typing import Optional

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc',
                       'sase_fused.cpp')
_CFLAGS = ['-O3', '-std=c++20', '-fopenmp']
_lock = threading.Lock()
_state = {'tried': False, 'module': None, 'error': None}


def fused_kernels(build: bool = True) -> Optional[object]:
    """The compiled module, or None when disabled or unavailable.

    Args:
        build: compile when not yet loaded in this process (default True).
    """
    if os.environ.get('SASE_MM_NO_EXT', '') not in ('', '0'):
        return None
    if _state['tried'] or not build:
        return _state['module']
    with _lock:
        if not _state['tried']:
            _state['module'] = _load()
            _state['tried'] = True
    return _state['module']


def _build_dir(name: str) -> str:
    from torch.utils.cpp_extension import get_default_build_root
    root = os.environ.get('TORCH_EXTENSIONS_DIR') or get_default_build_root()
    return os.path.join(root, 'sase_mm', name)


def _load():
    try:
        # Its import warns that no CUDA runtime is found: irrelevant to CPU
        # kernels, so quieted.
        ext_log = logging.getLogger('torch.utils.cpp_extension')
        level = ext_log.level
        ext_log.setLevel(logging.ERROR)
        try:
            import torch
            from torch.utils.cpp_extension import load
        finally:
            ext_log.setLevel(level)
        with open(_SOURCE, 'rb') as f:
            source = f.read()
        # The build is keyed by what determines the binary, and compiled
        # from a copy in its own directory: checkouts at other paths reuse
        # it instead of rebuilding (ninja would see a new source path).
        key = hashlib.sha1(b'\0'.join([
            source, torch.__version__.encode(), sys.version.encode(),
            ' '.join(_CFLAGS).encode()])).hexdigest()[:16]
        name = f'sase_mm_fused_{key}'
        build_dir = _build_dir(name)
        os.makedirs(build_dir, exist_ok=True)
        copy = os.path.join(build_dir, 'sase_fused.cpp')
        if not os.path.exists(copy):
            tmp = f'{copy}.{os.getpid()}.tmp'
            with open(tmp, 'wb') as f:
                f.write(source)
            os.replace(tmp, copy)  # atomic: concurrent builders agree
        logging.getLogger('sase_mm').info(
            'loading the fused SASE CPU kernels (compiled on first use)')
        return load(name, [copy], extra_cflags=_CFLAGS,
                    extra_ldflags=['-fopenmp'], build_directory=build_dir,
                    verbose=False)
    except Exception as e:  # no compiler / ninja: the PyTorch path works
        _state['error'] = e
        warnings.warn(f'sase_mm: the fused CPU kernels could not be built '
                      f'({type(e).__name__}: {str(e)[:300]}); using the '
                      f'PyTorch implementation (same values, slower).')
        return None
