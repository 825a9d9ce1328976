"""Which checkpoint a run resumes from: the newest one that reads.

A SASE search (arXiv 2411.08333) or a downstream training run killed while
writing leaves a truncated or damaged newest checkpoint; resuming from it
fails, or worse, resumes from garbage. This module owns the choice for the
tools' ``--resume``:

* :func:`checkpoints_in`: a work dir's checkpoints, newest first;
* :func:`check_readable`: whether one matches its SHA-256 (or, without
  one, loads with the safe loader), and why not;
* :func:`resumable`: the newest that does, with the newer ones skipped and
  why.

It stands on the two ground-floor services, the hashes
(``utils/checkpoint_files.py``) and the loader
(``utils/safe_checkpoint.py``); the tools' ``--resume`` applies it
(``apis/tool_args.py``).
"""
import glob
import os
import re
from typing import List, NamedTuple, Optional, Tuple

from ..utils.checkpoint_files import (CheckpointIntegrityError,
                                      recorded_hash, verify)
from ..utils.safe_checkpoint import UntrustedCheckpointError, load_checkpoint


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
