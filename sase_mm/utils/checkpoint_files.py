"""Checkpoint files that are whole or absent: writes, hashes, and choosing
one to resume from.

A SASE search (arXiv 2411.08333) or a downstream training run must never
lose its progress to a kill, a full disk or a flipped byte. This module owns
the file side of that:

* :func:`commit_checkpoint`: a checkpoint written to a temporary file in
  the same folder is flushed to disk and replaces the target (``os.replace``); then a SHA-256 is written beside it
  (``<name>.sha256``, ``sha256sum`` format). A failure at any point leaves
  the previous files as they were.
* :func:`verify`: the hash of a file against its ``.sha256`` (files without
  one, e.g. written by plain mmengine, are checked by loading them).
* :func:`resumable`: the newest checkpoint of a work dir that reads and
  verifies, with the files skipped and why, for ``--resume``.

The loader (``safe_checkpoint.load_checkpoint``) verifies the hash whenever
one is present; the hook that writes (``engine/checkpoint_hook.py``) calls
:func:`commit_checkpoint`.
"""
import glob
import hashlib
import os
import re
from typing import List, NamedTuple, Optional, Tuple

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


class Candidate(NamedTuple):
    path: str
    why: str  # '' when it reads and verifies


def _step(path: str) -> int:
    numbers = re.findall(r'\d+', os.path.basename(path))
    return int(numbers[-1]) if numbers else -1


def checkpoints_in(work_dir: str) -> List[str]:
    """The ``*.pth`` files of a work dir, newest first (by the number in the
    name, ``epoch_3`` / ``iter_300``, then by modification time); what
    ``last_checkpoint`` names comes first."""
    found = [p for p in glob.glob(os.path.join(work_dir, '*.pth'))
             if os.path.isfile(p)]
    found.sort(key=lambda p: (_step(p), os.path.getmtime(p)), reverse=True)
    last = os.path.join(work_dir, 'last_checkpoint')
    if os.path.isfile(last):
        with open(last) as f:
            named = f.read().strip()
        if named:
            found = [named] + [p for p in found if os.path.abspath(p) !=
                               os.path.abspath(named)]
    return found


def check_readable(path: str, raise_untrusted: bool = False) -> str:
    """'' if ``path`` exists and matches its SHA-256 (or, without one, loads
    with the safe loader); else why not, in one line.

    Args:
        raise_untrusted: re-raise the loader's refusal of a file that names
            code (its message says what to do) instead of describing it.
    """
    from .safe_checkpoint import UntrustedCheckpointError, load_checkpoint
    if not os.path.isfile(path):
        return 'missing'
    try:
        verify(path)
        if recorded_hash(path) is not None:
            return ''  # whole, as written: no need to read it twice
        load_checkpoint(path)
    except CheckpointIntegrityError:
        return 'SHA-256 mismatch'
    except UntrustedCheckpointError as err:
        if raise_untrusted:
            raise
        return f'refused, it names code: {err.refused}'
    except Exception as err:  # truncated, not a checkpoint
        first = str(err).splitlines()[0] if str(err) else ''
        kind = 'truncated or unreadable' if 'cannot read' in first else \
            type(err).__name__
        return f'{kind}: {first[:160]}'
    return ''


def resumable(work_dir: str) -> Tuple[Optional[str], List[Candidate]]:
    """The newest checkpoint of ``work_dir`` that reads and verifies.

    Returns:
        (path or None, the candidates newer than it that were skipped, each
        with the reason).
    """
    skipped = []
    for path in checkpoints_in(work_dir):
        why = check_readable(path)
        if not why:
            return path, skipped
        skipped.append(Candidate(path, why))
    return None, skipped
