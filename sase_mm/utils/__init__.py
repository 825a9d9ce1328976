from .atomic import atomic_open, atomic_torch_save, atomic_write_text
from .mim import register_mim_package
from .safe_checkpoint import (CheckpointReadError, UntrustedCheckpointError,
                              allow_mmengine_checkpoints,
                              install_mmengine_loader, load_checkpoint)

__all__ = [
    'CheckpointReadError', 'UntrustedCheckpointError', 'allow_mmengine_checkpoints',
    'atomic_open', 'atomic_torch_save', 'atomic_write_text',
    'install_mmengine_loader', 'load_checkpoint', 'register_mim_package'
]
