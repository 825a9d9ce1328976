"""apis/resume.py: the checkpoint a bare ``--resume`` takes (SASE, arXiv
2411.08333): the newest one that matches its SHA-256, or, without one,
loads; the newer ones are skipped with the reason. Checkpoints are written
here directly (the hook's own runs: tests/engine/test_safe_checkpoint_hook.py).
"""
import os

import torch

from sase_mm.apis.resume import check_readable, checkpoints_in, resumable
from sase_mm.utils.checkpoint_files import commit_checkpoint


def _save(path, value=0.):
    """A checkpoint written as the hook writes it: committed, hashed."""
    tmp = str(path) + '.tmp'
    torch.save({'w': torch.full((100, ), value)}, tmp)
    commit_checkpoint(tmp, str(path))
    return str(path)


def test_checkpoint_without_hash_is_checked_by_loading(tmp_path):
    good, bad = tmp_path / 'a.pth', tmp_path / 'b.pth'
    torch.save({'w': torch.zeros(100)}, str(good))
    bad.write_bytes(good.read_bytes()[:100])
    assert check_readable(str(good)) == ''
    assert 'truncated or unreadable' in check_readable(str(bad))
    assert check_readable(str(tmp_path / 'none.pth')) == 'missing'


def test_hashed_checkpoint_is_checked_against_its_hash(tmp_path):
    path = _save(tmp_path / 'epoch_1.pth')
    assert check_readable(path) == ''
    data = bytearray(open(path, 'rb').read())
    data[len(data) // 2] ^= 0xFF
    open(path, 'wb').write(bytes(data))
    assert check_readable(path) == 'SHA-256 mismatch'


def test_newest_first_last_checkpoint_leading(tmp_path):
    for n in (2, 10, 1):
        _save(tmp_path / f'epoch_{n}.pth')
    # By the number in the name, not as strings (10 after 2).
    assert [os.path.basename(p) for p in checkpoints_in(str(tmp_path))] == \
        ['epoch_10.pth', 'epoch_2.pth', 'epoch_1.pth']
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_2.pth'))
    assert [os.path.basename(p) for p in checkpoints_in(str(tmp_path))] == \
        ['epoch_2.pth', 'epoch_10.pth', 'epoch_1.pth']


def test_resumable_skips_the_damaged_newer_ones(tmp_path):
    for n in (1, 2, 3):
        _save(tmp_path / f'epoch_{n}.pth', float(n))
    (tmp_path / 'epoch_3.pth').write_bytes(b'half a checkpoint')
    os.remove(str(tmp_path / 'epoch_2.pth.sha256'))  # read by loading
    with open(str(tmp_path / 'epoch_2.pth'), 'r+b') as f:
        f.truncate(50)
    path, skipped = resumable(str(tmp_path))
    assert path == str(tmp_path / 'epoch_1.pth')
    assert [(os.path.basename(s.path), s.why.split(':')[0])
            for s in skipped] == [('epoch_3.pth', 'SHA-256 mismatch'),
                                  ('epoch_2.pth', 'truncated or unreadable')]
    assert resumable(str(tmp_path / 'empty')) == (None, [])
