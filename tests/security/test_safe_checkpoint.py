"""sase_mm.utils.safe_checkpoint: the one checkpoint loader refuses every
crafted file with a message naming it, runs nothing, and still reads what
mmengine, mmdet and mmpretrain write (SASE, arXiv 2411.08333)."""
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from sase_mm.utils import safe_pickle
from sase_mm.utils.safe_checkpoint import (CheckpointReadError,
                                           UntrustedCheckpointError,
                                           history_buffer_getattr,
                                           load_checkpoint, resave_trusted)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def test_each_payload_is_real(checkpoint_payload):
    """Control: full pickle runs each payload (so a refusal is meaningful)."""
    torch.load(checkpoint_payload.path, weights_only=False)
    assert checkpoint_payload.ran()


def test_chain_runs_where_getattr_is_allowed(chain_payload):
    """Control: the old process-wide allow-list (getattr allowed) ran the
    chain and the load succeeded, while plain torch refuses the file."""
    with pytest.raises(pickle.UnpicklingError, match='getattr'):
        torch.load(chain_payload.path, weights_only=True)
    assert not chain_payload.ran()
    with torch.serialization.safe_globals([getattr]):
        out = torch.load(chain_payload.path, weights_only=True)
    assert chain_payload.ran()
    assert torch.equal(out['state_dict']['w'], torch.zeros(1))


def test_loader_refuses_every_payload(checkpoint_payload):
    with pytest.raises(UntrustedCheckpointError) as info:
        load_checkpoint(checkpoint_payload.path)
    assert not checkpoint_payload.ran()
    msg = str(info.value)
    assert checkpoint_payload.path in msg
    assert 'nothing in it was executed' in msg
    assert '--i-trust-this-file' in msg and 'trust_checkpoint.py' in msg
    assert info.value.refused in msg and info.value.refused != 'unknown'


@pytest.mark.parametrize('name,refused', [
    ('reduce_system', 'posix.system'),
    ('getattr_eval_chain', 'builtins.getattr'),
    ('numpy_object_array', 'numpy.dtype(object)'),
])
def test_refusal_names_the_global(name, refused, tmp_path):
    from data_utils import payloads
    path = payloads.CHECKPOINT_PAYLOADS[name](str(tmp_path / 'x.pth'),
                                              str(tmp_path / 'ran'))
    with pytest.raises(UntrustedCheckpointError) as info:
        load_checkpoint(path)
    assert info.value.refused == refused
    assert f'`{refused}`' in str(info.value)
    assert not (tmp_path / 'ran').exists()


def test_mmengine_checkpoint_loaders_are_the_safe_one(checkpoint_payload):
    """mmengine's own entry points (Runner.resume / load_from /
    init_cfg Pretrained all end in CheckpointLoader) refuse too."""
    from mmengine.runner.checkpoint import (CheckpointLoader,
                                            _load_checkpoint)
    from mmengine.runner.checkpoint import \
        load_checkpoint as mm_load_checkpoint
    with pytest.raises(UntrustedCheckpointError):
        _load_checkpoint(checkpoint_payload.path, map_location='cpu')
    with pytest.raises(UntrustedCheckpointError):
        CheckpointLoader.load_checkpoint(checkpoint_payload.path)
    with pytest.raises(UntrustedCheckpointError):
        mm_load_checkpoint(torch.nn.Linear(1, 1), checkpoint_payload.path)
    assert not checkpoint_payload.ran()


def test_pretrained_init_cfg_through_the_api(checkpoint_payload):
    from sase_mm.registry import MODELS
    backbone = MODELS.build(dict(
        type='sase_mm.SASEResNet', depth=18, attn_cfg=None,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_payload.path)))
    with pytest.raises(UntrustedCheckpointError) as info:
        backbone.init_weights()
    assert checkpoint_payload.path in str(info.value)
    assert not checkpoint_payload.ran()


def test_history_buffer_getattr_allows_only_statistics():
    from mmengine.logging import HistoryBuffer
    for name in ('min', 'max', 'current', 'mean'):
        assert history_buffer_getattr(HistoryBuffer, name) is getattr(
            HistoryBuffer, name)
    for obj, name in ((HistoryBuffer, '__init__'), (HistoryBuffer,
                                                    '__class__'),
                      (getattr, '__self__'), (os, 'system'),
                      (HistoryBuffer, 'register_statistics')):
        with pytest.raises(pickle.UnpicklingError, match='refused getattr'):
            history_buffer_getattr(obj, name)


def test_numpy_wrappers_refuse_objects():
    with pytest.raises(safe_pickle.UnsafePickleError):
        safe_pickle._safe_dtype('O8')
    with pytest.raises(safe_pickle.UnsafePickleError):
        safe_pickle._safe_dtype([('a', 'f4'), ('b', 'O')])
    assert safe_pickle._safe_dtype('f8') == np.float64
    with pytest.raises(safe_pickle.UnsafePickleError):
        safe_pickle._safe_reconstruct(np.matrix, (0, ), b'b')
    with pytest.raises(safe_pickle.UnsafePickleError):
        safe_pickle.check_inert({'a': [np.empty(1, dtype=object)]})
    safe_pickle.check_inert({'a': [np.zeros(3), np.float32(1)]})


def test_real_mmengine_checkpoint_loads_with_message_hub(tmp_path):
    """A checkpoint as mmengine's Runner saves it (HistoryBuffer with its
    statistic methods, numpy arrays and scalars) loads and keeps values."""
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub.get_instance('safe_ckpt_test')
    for v in (1.0, 3.0, 2.0):
        hub.update_scalar('train/loss', v)
    hub.update_info('np_scalar', np.float64(1.5))
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(meta=dict(epoch=1, seed=np.int64(3),
                              mean=np.arange(3.0)),
                    state_dict={'w': torch.arange(4.)},
                    message_hub=hub.state_dict()), path)
    with pytest.raises(pickle.UnpicklingError):  # plain torch refuses it
        torch.load(path, weights_only=True)
    ckpt = load_checkpoint(path)
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf.mean() == pytest.approx(2.0) and buf.max() == 3.0
    assert ckpt['meta']['seed'] == 3 and ckpt['meta']['mean'][2] == 2.0
    assert torch.equal(ckpt['state_dict']['w'], torch.arange(4.))


def test_unreadable_file_names_it(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'w': torch.zeros(1000)}, str(good))
    bad = tmp_path / 'truncated.pth'
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointReadError, match='truncated.pth'):
        load_checkpoint(str(bad))
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_checkpoint(str(tmp_path / 'missing.pth'))


class Harmless:
    """An object of the user's own: refused, though harmless."""

    def __init__(self):
        self.x = 1


def test_trust_tool_converts_only_with_the_flag(tmp_path):
    src = str(tmp_path / 'mine.pth')
    torch.save(dict(state_dict={'w': torch.ones(2)}, meta=dict(
        obj=Harmless(), ok='kept')), src)
    with pytest.raises(UntrustedCheckpointError, match='Harmless'):
        load_checkpoint(src)
    dst = str(tmp_path / 'mine.trusted.pth')
    tool = os.path.join(REPO, 'tools', 'trust_checkpoint.py')
    refused = subprocess.run([sys.executable, tool, src, dst],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and '--i-trust-this-file' in \
        refused.stderr
    assert not os.path.exists(dst)
    dropped = resave_trusted(src, dst)
    assert any('Harmless' in d for d in dropped)
    out = load_checkpoint(dst)
    assert out['meta']['ok'] == 'kept' and out['meta']['obj'] is None
    assert torch.equal(out['state_dict']['w'], torch.ones(2))


def test_import_leaves_torch_load_as_strict(tmp_path):
    """In a fresh process: torch's allow-list and torch.load's behaviour on
    the crafted and the mmengine files are the same before and after
    ``import sase_mm``."""
    from data_utils import payloads
    marker = str(tmp_path / 'ran')
    chain = payloads.getattr_chain_checkpoint(str(tmp_path / 'c.pth'),
                                              marker)
    hub_ckpt = str(tmp_path / 'hub.pth')
    # mmdet / mmpretrain first: importing torch.distributed.tensor and
    # torch._dynamo makes torch allow-list classes of its own; only what
    # importing sase_mm itself changes is compared.
    script = textwrap.dedent(f'''
        import json, sys, torch
        import mmdet.models, mmpretrain.models, mmengine.runner
        from mmengine.logging import MessageHub
        hub = MessageHub.get_instance('x'); hub.update_scalar('loss', 1.0)
        torch.save(dict(message_hub=hub.state_dict()), {hub_ckpt!r})

        def probe():
            out = [sorted(map(str, torch.serialization.get_safe_globals()))]
            for path in ({chain!r}, {hub_ckpt!r}):
                try:
                    torch.load(path, weights_only=True)
                    out.append('loaded')
                except Exception as e:
                    out.append(type(e).__name__ + ': ' + str(e))
            return out
        before = probe()
        import sase_mm
        after = probe()
        print(json.dumps([before, after]))
    ''')
    res = subprocess.run([sys.executable, '-c', script], capture_output=True,
                         text=True, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    import json
    before, after = json.loads(res.stdout.strip().splitlines()[-1])
    assert before == after
    names = ' '.join(before[0])
    assert 'getattr' not in names and 'HistoryBuffer' not in names
    assert 'numpy' not in names
    assert before[1].startswith('UnpicklingError')
    assert 'GLOBAL getattr' in before[1]
    assert before[2].startswith('UnpicklingError')
    assert not os.path.exists(marker)


@pytest.mark.parametrize('name', ['torchvision://resnet50',
                                  'https://example.org/models/x.pth'])
def test_urls_and_model_zoo_names_load_safely(name, chain_payload,
                                              tmp_path, monkeypatch):
    """mmengine's own URL loader is torch.hub's (weights_only=False); the
    installed one reads the downloaded copy with the safe loader (here the
    cache is planted with the crafted file: no network)."""
    from urllib.parse import urlparse

    from mmengine.runner import checkpoint as mm
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    url = mm.get_torchvision_models()['resnet50'] if name.startswith(
        'torchvision') else name
    filename = os.path.basename(urlparse(url).path)
    cached = tmp_path / 'torch_home' / 'hub' / 'checkpoints' / filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(open(chain_payload.path, 'rb').read())
    with pytest.raises(UntrustedCheckpointError) as info:
        mm._load_checkpoint(name, map_location='cpu')
    assert str(cached) in str(info.value)
    assert not chain_payload.ran()
