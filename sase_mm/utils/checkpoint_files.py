"""Checkpoint files that are whole or absent: their writes and hashes.

A SASE search (arXiv 2411.08333) or a downstream training run must never
lose its progress to a kill, a full disk or a flipped byte. This module owns
the file side of that:

* :func:`commit_checkpoint`: a checkpoint written to a temporary file in
  the same folder is flushed to disk and replaces the target
  (``os.replace``); then a SHA-256 is written beside it (``<name>.sha256``,
  ``sha256sum`` format). A failure at any point leaves the previous files
  as they were.
* :func:`verify`: the hash of a file against its ``.sha256`` (nothing to
  check for files without one, e.g. written by plain mmengine).

The loader (``safe_checkpoint.load_checkpoint``) verifies the hash whenever
one is present; the hook that writes (``engine/checkpoint_hook.py``) calls
:func:`commit_checkpoint`; the choice of a checkpoint to resume from
(``apis/resume.py``) stands on both.
"""
import hashlib
import os
import re
from typing import Optional

from .atomic import atomic_write_text

HASH_SUFFIX = '.sha256'
_CHUNK = 1 << 20


class CheckpointIntegrityError(RuntimeError):
    """A checkpoint whose bytes differ from its recorded SHA-256."""


def sha256_of(path: str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def hash_path(path: str) -> str:
    return path + HASH_SUFFIX


def recorded_hash(path: str) -> Optional[str]:
    """The hash written beside ``path``, or None (no or unreadable file)."""
    try:
        with open(hash_path(path)) as f:
            text = f.read(200).split()
    except OSError:
        return None
    if not text or not re.fullmatch(r'[0-9a-f]{64}', text[0]):
        return None
    return text[0]


def commit_checkpoint(tmp: str, path: str) -> str:
    """Makes a fully written temporary file (in ``path``'s folder) the
    checkpoint ``path``: flushed to disk, renamed onto it, then its SHA-256
    written beside it. Returns the hex digest."""
    with open(tmp, 'rb+') as f:
        os.fsync(f.fileno())
    digest = sha256_of(tmp)
    os.replace(tmp, path)
    atomic_write_text(hash_path(path),
                      f'{digest}  {os.path.basename(path)}\n')
    return digest


def verify(path: str) -> None:
    """Raises :class:`CheckpointIntegrityError` if ``path`` has a recorded
    hash that its bytes do not match (nothing to check without one)."""
    want = recorded_hash(path)
    if want is None:
        return
    got = sha256_of(path)
    if got != want:
        raise CheckpointIntegrityError(
            f'checkpoint {path!r} does not match its SHA-256 '
            f'({hash_path(path)}: {want[:16]}..., file: {got[:16]}...): it '
            f'was changed or damaged after it was written')


def remove_checkpoint(path: str) -> None:
    """Deletes a checkpoint and its hash (each if present)."""
    for p in (path, hash_path(path)):
        if os.path.lexists(p):
            os.remove(p)
