"""Compiled CPU kernels of the fused SASE block (``csrc/sase_fused.cpp``).

SASE (arXiv 2411.08333). The kernels are compiled on first use with
``torch.utils.cpp_extension.load`` (ninja and a C++20 compiler with OpenMP, which ATen's
``parallel_for`` uses; about a minute,
cached under ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``, and
rebuilt only when the source changes). ``tools/setup_env.sh`` builds them.
Without them the fused block runs the same formulas with PyTorch operators
(``SASE_MM_NO_EXT=1`` forces that).
"""
import logging
import os
import threading
import warnings
from typing import Optional

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc',
                       'sase_fused.cpp')
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


def _load():
    try:
        # Its import warns that no CUDA runtime is found: irrelevant to CPU
        # kernels, so quieted.
        ext_log = logging.getLogger('torch.utils.cpp_extension')
        level = ext_log.level
        ext_log.setLevel(logging.ERROR)
        try:
            from torch.utils.cpp_extension import load
        finally:
            ext_log.setLevel(level)
        logging.getLogger('sase_mm').info(
            'loading the fused SASE CPU kernels (compiled on first use)')
        return load('sase_mm_fused', [_SOURCE],
                    extra_cflags=['-O3', '-std=c++20', '-fopenmp'],
                    extra_ldflags=['-fopenmp'], verbose=False)
    except Exception as e:  # no compiler / ninja: the PyTorch path works
        _state['error'] = e
        warnings.warn(f'sase_mm: the fused CPU kernels could not be built '
                      f'({type(e).__name__}: {str(e)[:300]}); using the '
                      f'PyTorch implementation (same values, slower).')
        return None
