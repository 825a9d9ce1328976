"""The ground floor: services every part of sase_mm (SASE, arXiv
2411.08333) stands on, importing nothing of sase_mm above it.

* ``atomic.py``: writes that leave the old file or the whole new one;
* ``safe_pickle.py``, ``safe_checkpoint.py``: pickles and checkpoints read
  without running code (the one checkpoint loader);
* ``checkpoint_files.py``: checkpoint writes and their SHA-256;
* ``json_file.py``: a user's JSON file read as hostile input (bounded,
  parsed, depth-checked);
* ``unwrap.py``: the model inside a distributed wrapper;
* ``mim.py``: ``sase_mm::`` config paths for mmengine.
"""
from .atomic import atomic_open, atomic_torch_save, atomic_write_text
from .mim import register_mim_package
from .safe_checkpoint import (CheckpointReadError, UntrustedCheckpointError,
                              install_mmengine_loader, load_checkpoint)

__all__ = [
    'CheckpointReadError', 'UntrustedCheckpointError', 'atomic_open',
    'atomic_torch_save', 'atomic_write_text', 'install_mmengine_loader',
    'load_checkpoint', 'register_mim_package'
]
