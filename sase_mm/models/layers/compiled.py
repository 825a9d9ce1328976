"""Compiled CPU kernels: built on first use, cached by a hash, optional.

SASE (arXiv 2411.08333). Two sets of C++ kernels restate formulas of the
models in fewer passes over memory: the squeeze statistics' here
(``csrc/sase_stats.cpp``: :func:`stats_kernels`, used by
``stat_functions.py`` and ``squeeze.py``) and the fused SASE block's
(``sase/fast/kernels.py``). Each is a :class:`CompiledKernels`, compiled on
first use with ``torch.utils.cpp_extension.load`` (ninja and a C++20
compiler with OpenMP, which ATen's ``parallel_for`` uses; about a minute)
and cached under ``$TORCH_EXTENSIONS_DIR/sase_mm`` (default
``~/.cache/torch_extensions/sase_mm``), in a directory named by a hash of
the source, the header they share (``csrc/sase_cpu.h``), the torch and
Python versions and the flags: a change of any
of them builds anew, and other checkouts of the same source reuse the
build. ``tools/setup_env.sh`` builds them. A build announces itself on
stderr (what it compiles, that it happens once, how long it usually takes
and where the cache is) and again when it is done. Without the kernels
(``SASE_MM_NO_EXT=1`` skips the build and forces that; no compiler; GPU
tensors; other dtypes; under ``torch.compile``) the same formulas run with
PyTorch operators.
"""
import hashlib
import logging
import os
import sys
import threading
import time
import warnings
from typing import Optional, Sequence

import torch

_CFLAGS = ['-O3', '-std=c++20', '-fopenmp']
#: The header every kernel source includes (``csrc/sase_cpu.h``: the
#: multiversioning of the loops, the argument check).
CPU_HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          'csrc', 'sase_cpu.h')


def disabled() -> bool:
    """Whether ``SASE_MM_NO_EXT`` switches the compiled kernels off."""
    return os.environ.get('SASE_MM_NO_EXT', '') not in ('', '0')


class CompiledKernels:
    """One C++ source, compiled on first use (see the module doc).

    Args:
        prefix: the build's name before its hash, e.g. ``'sase_mm_stats'``.
        source: path of the ``.cpp`` file.
        title: what the announcements call it, e.g. ``'fused SASE CPU
            kernels'``.
        short: what the warning of a failed build calls it (default
            ``title``).
        headers: paths of the headers the source includes by their bare
            names (default: :data:`CPU_HEADER`); they key the build with
            the source and are copied beside its copy.
    """

    def __init__(self, prefix: str, source: str, title: str,
                 short: Optional[str] = None,
                 headers: Optional[Sequence[str]] = None):
        self.prefix, self.source, self.title = prefix, source, title
        self.short = title if short is None else short
        self.headers = (CPU_HEADER, ) if headers is None else tuple(headers)
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        """Forgets the outcome of a previous load (the next one retries)."""
        self.tried, self.module, self.error = False, None, None

    def load(self) -> Optional[object]:
        """The compiled module (built on first use), or None when disabled
        (``SASE_MM_NO_EXT=1``) or unavailable."""
        if disabled():
            return None
        if self.tried:
            return self.module
        with self._lock:
            if not self.tried:
                self.module = self._build()
                self.tried = True
        return self.module

    def _build(self):
        try:
            # Its import warns that no CUDA runtime is found: irrelevant to
            # CPU kernels, so quieted.
            ext_log = logging.getLogger('torch.utils.cpp_extension')
            level = ext_log.level
            ext_log.setLevel(logging.ERROR)
            try:
                from torch.utils.cpp_extension import load
            finally:
                ext_log.setLevel(level)
            files = [self.source, *self.headers]
            texts = []
            for path in files:
                with open(path, 'rb') as f:
                    texts.append(f.read())
            # The build is keyed by what determines the binary, and
            # compiled from a copy in its own directory (the headers
            # beside it): checkouts at other paths reuse it instead of
            # rebuilding (ninja would see a new source path).
            key = hashlib.sha1(b'\0'.join([
                *texts, torch.__version__.encode(), sys.version.encode(),
                ' '.join(_CFLAGS).encode()])).hexdigest()[:16]
            name = f'{self.prefix}_{key}'
            build_dir = build_root(name)
            os.makedirs(build_dir, exist_ok=True)
            from ...utils.atomic import atomic_open
            copies = [os.path.join(build_dir, os.path.basename(path))
                      for path in files]
            for copy, text in zip(copies, texts):
                if not os.path.exists(copy):
                    with atomic_open(copy, 'wb') as f:  # concurrent builders
                        f.write(text)
            built = is_built(build_dir, name)
            if not built:
                print(f'sase_mm: compiling the {self.title} (once per '
                      f'torch/Python version; usually about a minute). '
                      f'Cache: {build_dir}. Set SASE_MM_NO_EXT=1 to skip '
                      f'the build and use the PyTorch implementation.',
                      file=sys.stderr, flush=True)
            start = time.perf_counter()
            # The source only: it finds its headers beside it.
            module = load(name, copies[:1], extra_cflags=_CFLAGS,
                          extra_ldflags=['-fopenmp'],
                          build_directory=build_dir, verbose=False)
            if not built:
                print(f'sase_mm: {self.title} compiled in '
                      f'{time.perf_counter() - start:.0f} s (cached in '
                      f'{build_dir}).', file=sys.stderr, flush=True)
            return module
        except Exception as e:  # no compiler / ninja: PyTorch path works
            self.error = e
            warnings.warn(f'sase_mm: the {self.short} could not be built '
                          f'({type(e).__name__}: {str(e)[:300]}); using the '
                          f'PyTorch implementation (same values, slower).')
            return None


def build_root(name: str) -> str:
    """The cache directory of the build ``name``."""
    from torch.utils.cpp_extension import get_default_build_root
    root = os.environ.get('TORCH_EXTENSIONS_DIR') or get_default_build_root()
    return os.path.join(root, 'sase_mm', name)


def is_built(build_dir: str, name: str) -> bool:
    """Whether the cache already holds the built library."""
    return os.path.isfile(os.path.join(build_dir, f'{name}.so'))


STATS = CompiledKernels(
    'sase_mm_stats',
    os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc',
                 'sase_stats.cpp'),
    'SASE statistics CPU kernels')


def stats_kernels() -> Optional[object]:
    """The compiled statistics kernels, or None (see the module doc)."""
    return STATS.load()


def stats_kernels_for(x: torch.Tensor) -> Optional[object]:
    """The statistics kernels if they apply to x (a CPU float32 / float64
    tensor, eager mode), else None. Under ``torch.compile`` / export the
    PyTorch formulas run: a compiler cannot trace into the kernels."""
    if (x.device.type != 'cpu' or x.dtype not in (torch.float32,
                                                   torch.float64)
            or torch.compiler.is_compiling()):
        return None
    return stats_kernels()
