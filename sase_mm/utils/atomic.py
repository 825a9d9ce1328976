"""Atomic file writes: a reader sees the old file or the whole new one.

Every file sase_mm writes (genotypes, alpha plots and histories, converted
checkpoints) goes through here. The bytes go to a temporary file in the same
folder, are flushed to disk (``fsync``), and replace the target with
``os.replace``, which is atomic on POSIX; a failure at any point removes the
temporary file and leaves the previous target untouched. The file gets the
permissions a plain ``open`` would give it (0666 less the umask), not the
owner-only 0600 of the temporary file.
"""
import contextlib
import os
import tempfile
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path: str, mode: str = 'w') -> Iterator[IO]:
    """Opens a temporary file beside ``path`` that replaces it on success.

    Args:
        path: the file to write.
        mode: ``'w'`` (text) or ``'wb'`` (binary).
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got "
                         f'{mode!r}')
    directory = os.path.dirname(os.path.abspath(path)) or '.'
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.',
                               suffix='.tmp', dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it: set back at
    once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_open(path, 'w') as f:
        f.write(text)


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save(obj, path)`` atomically."""
    import torch
    with atomic_open(path, 'wb') as f:
        torch.save(obj, f)
