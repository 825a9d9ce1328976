"""The compiled CPU kernels of the fused SASE block and their loader.

SASE (arXiv 2411.08333). The kernels are compiled on first use with
``torch.utils.cpp_extension.load`` (ninja and a C++20 compiler with OpenMP,
which ATen's ``parallel_for`` uses; about a minute) and cached under
``$TORCH_EXTENSIONS_DIR/sase_mm`` (default
``~/.cache/torch_extensions/sase_mm``), in a directory named by a hash of
the source, the torch and Python versions and the flags: a change of any of
them builds anew, and other checkouts of the same source reuse the build.
``tools/setup_env.sh`` builds them. A build announces itself on stderr
(what it compiles, that it happens once, how long it usually takes and where
the cache is) and again when it is done. Without the kernels the fused block
runs the same formulas with PyTorch operators (``SASE_MM_NO_EXT=1`` skips
the build and forces that). The source is ``csrc/sase_fused.cpp``; the
fused node's ``dispatch.py`` decides when they run.
"""
import hashlib
import logging
import os
import sys
import threading
import time
import warnings
from typing import Optional

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc',
                       'sase_fused.cpp')
_CFLAGS = ['-O3', '-std=c++20', '-fopenmp']
_lock = threading.Lock()
_state = {'tried': False, 'module': None, 'error': None}


def fused_kernels() -> Optional[object]:
    """The compiled module (built on first use), or None when disabled
    (``SASE_MM_NO_EXT=1``) or unavailable."""
    if os.environ.get('SASE_MM_NO_EXT', '') not in ('', '0'):
        return None
    if _state['tried']:
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


def _is_built(build_dir: str, name: str) -> bool:
    """Whether the cache already holds the built library."""
    return os.path.isfile(os.path.join(build_dir, f'{name}.so'))


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
            from ....utils.atomic import atomic_open
            with atomic_open(copy, 'wb') as f:  # concurrent builders agree
                f.write(source)
        built = _is_built(build_dir, name)
        if not built:
            print(f'sase_mm: compiling the fused SASE CPU kernels (once per '
                  f'torch/Python version; usually about a minute). Cache: '
                  f'{build_dir}. Set SASE_MM_NO_EXT=1 to skip the build and '
                  f'use the PyTorch implementation.', file=sys.stderr,
                  flush=True)
        start = time.perf_counter()
        module = load(name, [copy], extra_cflags=_CFLAGS,
                      extra_ldflags=['-fopenmp'], build_directory=build_dir,
                      verbose=False)
        if not built:
            print(f'sase_mm: fused SASE CPU kernels compiled in '
                  f'{time.perf_counter() - start:.0f} s (cached in '
                  f'{build_dir}).', file=sys.stderr, flush=True)
        return module
    except Exception as e:  # no compiler / ninja: the PyTorch path works
        _state['error'] = e
        warnings.warn(f'sase_mm: the fused CPU kernels could not be built '
                      f'({type(e).__name__}: {str(e)[:300]}); using the '
                      f'PyTorch implementation (same values, slower).')
        return None
