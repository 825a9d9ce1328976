"""SafeCheckpointHook and --resume lose nothing (SASE, arXiv 2411.08333):
a write that fails half way leaves the previous checkpoint intact and named;
a truncated or bit-flipped checkpoint is skipped by a bare --resume, which
says so, and refused with the good ones listed when named explicitly
(the hook's runs; the choice itself: tests/apis/test_resume.py)."""
import copy
import errno
import glob
import os
import types

import pytest
from mmengine.config import Config
from mmengine.runner import Runner
from tiny_search_cfg import tiny_search_cfg

from sase_mm.apis.resume import resumable
from sase_mm.apis.tool_args import apply_training_args
from sase_mm.utils.checkpoint_files import (CheckpointIntegrityError,
                                            recorded_hash, sha256_of)
from sase_mm.utils.safe_checkpoint import CheckpointReadError, load_checkpoint


def _cfg(work_dir, epochs=2, keep=1):
    cfg = tiny_search_cfg(work_dir, max_epochs=epochs, val=False)
    cfg['default_hooks']['checkpoint'] = dict(
        type='sase_mm.SafeCheckpointHook', interval=1, max_keep_ckpts=keep)
    return cfg


def _train(cfg):
    runner = Runner.from_cfg(Config(copy.deepcopy(cfg)))
    runner.train()
    return runner


def _assert_every_checkpoint_is_whole(work_dir):
    for path in glob.glob(os.path.join(work_dir, '*.pth')):
        assert recorded_hash(path) == sha256_of(path), path
        load_checkpoint(path)
    assert not glob.glob(os.path.join(work_dir, '.*.tmp'))


def test_writes_hash_and_keeps_last_checkpoint(tmp_path):
    _train(_cfg(tmp_path, epochs=3, keep=2))
    names = sorted(os.path.basename(p)
                   for p in glob.glob(str(tmp_path / '*.pth*')))
    assert names == ['epoch_2.pth', 'epoch_2.pth.sha256', 'epoch_3.pth',
                     'epoch_3.pth.sha256']
    assert (tmp_path / 'last_checkpoint').read_text() == str(
        tmp_path / 'epoch_3.pth')
    _assert_every_checkpoint_is_whole(tmp_path)


def test_write_failing_half_way_keeps_previous(tmp_path, monkeypatch):
    """An OSError (disk full) after half the bytes of epoch 2's write: the
    run stops, epoch 1 is intact and named by last_checkpoint."""
    from mmengine.fileio.backends import LocalBackend
    real_put = LocalBackend.put
    calls = []

    def failing_put(self, obj, filepath):
        calls.append(filepath)
        if len(calls) == 2:
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real_put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', failing_put)
    with pytest.raises(OSError, match='No space left'):
        _train(_cfg(tmp_path, epochs=2, keep=1))
    assert len(calls) == 2
    assert (tmp_path / 'last_checkpoint').read_text() == str(
        tmp_path / 'epoch_1.pth')
    assert not (tmp_path / 'epoch_2.pth').exists()
    _assert_every_checkpoint_is_whole(tmp_path)
    assert load_checkpoint(str(tmp_path / 'epoch_1.pth'))['meta'][
        'epoch'] == 1
    # ... and the search resumes from it and finishes.
    monkeypatch.setattr(LocalBackend, 'put', real_put)
    cfg = _cfg(tmp_path, epochs=2, keep=1)
    cfg['resume'] = True
    _train(cfg)
    assert load_checkpoint(str(tmp_path / 'epoch_2.pth'))['meta'][
        'epoch'] == 2


def _damage(path, how):
    data = bytearray(open(path, 'rb').read())
    if how == 'truncated':
        data = data[:len(data) // 3]
    else:  # 64 flipped bytes in the middle, as the failure report did
        mid = len(data) // 2
        for i in range(mid, mid + 64):
            data[i] ^= 0xFF
    with open(path, 'wb') as f:
        f.write(bytes(data))


@pytest.fixture(scope='module')
def three_epochs(tmp_path_factory):
    work = tmp_path_factory.mktemp('three_epochs')
    _train(_cfg(work, epochs=3, keep=3))
    return work


def _copy_run(src, dst):
    os.makedirs(dst)
    for name in os.listdir(src):
        p = os.path.join(src, name)
        if os.path.isfile(p):
            data = open(p, 'rb').read()
            if name == 'last_checkpoint':
                data = data.replace(str(src).encode(), str(dst).encode())
            open(os.path.join(dst, name), 'wb').write(data)


@pytest.mark.parametrize('how', ['truncated', 'flipped'])
def test_bare_resume_takes_the_previous_good_one(how, three_epochs,
                                                 tmp_path, capsys):
    work = tmp_path / 'work'
    _copy_run(three_epochs, work)
    _damage(str(work / 'epoch_3.pth'), how)
    with pytest.raises((CheckpointIntegrityError, CheckpointReadError)):
        load_checkpoint(str(work / 'epoch_3.pth'))
    path, skipped = resumable(str(work))
    assert path == str(work / 'epoch_2.pth')
    assert [s.path for s in skipped] == [str(work / 'epoch_3.pth')]
    assert 'SHA-256 mismatch' in skipped[0].why
    cfg = Config(_cfg(work, epochs=3, keep=3))
    args = types.SimpleNamespace(no_validate=False, resume='auto')
    cfg = apply_training_args(cfg, args)
    assert cfg.resume is True and cfg.load_from == str(work / 'epoch_2.pth')
    out = capsys.readouterr()
    assert 'skipping' in out.out + out.err and 'epoch_3.pth' in out.out + \
        out.err
    # The resumed search runs to the end from epoch 2.
    resumed = _train(cfg.to_dict())
    assert resumed.epoch == 3


def test_explicit_corrupt_resume_names_the_good_ones(three_epochs, tmp_path):
    work = tmp_path / 'work'
    _copy_run(three_epochs, work)
    _damage(str(work / 'epoch_3.pth'), 'flipped')
    cfg = Config(_cfg(work, epochs=3, keep=3))
    args = types.SimpleNamespace(no_validate=False,
                                 resume=str(work / 'epoch_3.pth'))
    with pytest.raises(CheckpointReadError) as info:
        apply_training_args(cfg, args)
    msg = str(info.value)
    assert 'epoch_3.pth' in msg and 'SHA-256 mismatch' in msg
    assert str(work / 'epoch_2.pth') in msg
    assert str(work / 'epoch_1.pth') in msg
