"""utils/checkpoint_files.py: a checkpoint commit that leaves the file and
its SHA-256 whole, and the check the safe loader makes with it (SASE, arXiv
2411.08333)."""
import hashlib
import os

import pytest
import torch

from sase_mm.utils.checkpoint_files import (CheckpointIntegrityError,
                                            commit_checkpoint, hash_path,
                                            recorded_hash, remove_checkpoint,
                                            verify)
from sase_mm.utils.safe_checkpoint import load_checkpoint


def _commit(tmp_path, name='epoch_1.pth'):
    path, tmp = str(tmp_path / name), str(tmp_path / f'.{name}.tmp')
    torch.save({'w': torch.arange(10.)}, tmp)
    return path, commit_checkpoint(tmp, path)


def test_commit_renames_and_writes_sha256sum_format(tmp_path):
    path, digest = _commit(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ['epoch_1.pth',
                                            'epoch_1.pth.sha256']
    assert digest == hashlib.sha256(open(path, 'rb').read()).hexdigest()
    assert open(hash_path(path)).read() == f'{digest}  epoch_1.pth\n'
    assert recorded_hash(path) == digest
    verify(path)  # nothing raised


def test_changed_bytes_are_refused_by_verify_and_the_loader(tmp_path):
    path, _ = _commit(tmp_path)
    data = bytearray(open(path, 'rb').read())
    data[-30] ^= 0x01
    open(path, 'wb').write(bytes(data))
    with pytest.raises(CheckpointIntegrityError, match='SHA-256'):
        verify(path)
    with pytest.raises(CheckpointIntegrityError, match='epoch_1.pth'):
        load_checkpoint(path)


def test_a_file_without_or_with_a_malformed_hash_is_not_checked(tmp_path):
    path, _ = _commit(tmp_path)
    open(hash_path(path), 'w').write('not a digest\n')
    assert recorded_hash(path) is None
    verify(path)
    os.remove(hash_path(path))
    assert recorded_hash(path) is None
    assert torch.equal(load_checkpoint(path)['w'], torch.arange(10.))


def test_remove_deletes_file_and_hash(tmp_path):
    path, _ = _commit(tmp_path)
    remove_checkpoint(path)
    assert os.listdir(tmp_path) == []
    remove_checkpoint(path)  # absent: nothing to do
