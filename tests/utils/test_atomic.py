"""sase_mm.utils.atomic: a reader sees the old file or the whole new one,
a failed write leaves the old file and no temporary file, and the written
file has the permissions a plain ``open`` gives (0666 less the umask)."""
import os
import stat

import pytest

from sase_mm.utils.atomic import atomic_open, atomic_write_text


def test_write_replaces_the_file(tmp_path):
    path = tmp_path / 'out.json'
    path.write_text('old')
    atomic_write_text(str(path), 'new')
    assert path.read_text() == 'new'
    assert os.listdir(tmp_path) == ['out.json']


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / 'out.json'
    path.write_text('old')
    with pytest.raises(RuntimeError, match='disk full'):
        with atomic_open(str(path)) as f:
            f.write('half of the new')
            raise RuntimeError('disk full')
    assert path.read_text() == 'old'
    assert os.listdir(tmp_path) == ['out.json']


@pytest.mark.parametrize('umask', [0o022, 0o077, 0o002])
def test_the_file_gets_the_permissions_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(str(tmp_path / 'atomic'), 'x')
        with open(tmp_path / 'plain', 'w') as f:
            f.write('x')
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / 'atomic').st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / 'plain').st_mode)
    assert mode == 0o666 & ~umask
    assert os.umask(old) == old  # the umask is left as it was
    os.umask(old)


def test_binary_mode_and_a_bad_mode(tmp_path):
    with atomic_open(str(tmp_path / 'b.bin'), 'wb') as f:
        f.write(b'\x00\x01')
    assert (tmp_path / 'b.bin').read_bytes() == b'\x00\x01'
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic_open(str(tmp_path / 'c'), 'a'):
            pass
