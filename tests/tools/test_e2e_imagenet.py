"""End to end on CPU: the SASE ResNet-50 ImageNet config (SASE, arXiv
2411.08333) trains through tools/train.py on a tiny ImageNet-format set,
evaluates top-1 / top-5, writes a checkpoint that the safe loader reads,
and tools/test.py evaluates that checkpoint."""
import os.path as osp

import torch
from data_utils.tool_runs import (as_argv, config_path, imagenet_options,
                                  load_tool)

from sase_mm.utils import load_checkpoint


def test_imagenet_train_writes_checkpoint_and_validates(imagenet_run):
    work_dir, ckpt, runner = imagenet_run
    assert osp.isfile(ckpt)
    # 6 images, batch 2, one epoch.
    assert runner.iter == 3 and runner.epoch == 1
    # The real config's model: SASE blocks in every bottleneck.
    backbone = runner.model.backbone
    assert type(backbone).__name__ == 'SASEResNet'
    blocks = [m for n, m in backbone.named_modules()
              if n.endswith('.attention')]
    assert len(blocks) == 16
    assert all(type(b).__name__ == 'SASE' for b in blocks)
    # Validation ran: the message hub holds top-1 / top-5 as numbers.
    scalars = runner.message_hub.log_scalars
    for key in ('val/accuracy/top1', 'val/accuracy/top5'):
        assert key in scalars, sorted(scalars)
        value = scalars[key].current()
        assert 0.0 <= float(value) <= 100.0


def test_checkpoint_loads_with_torch_safe_default(imagenet_run):
    import sase_mm  # noqa: F401  allow-lists mmengine's checkpoint globals
    _, ckpt, runner = imagenet_run
    data = load_checkpoint(ckpt)
    assert {'state_dict', 'meta', 'message_hub', 'optimizer'} <= set(data)
    own = runner.model.state_dict()
    assert set(data['state_dict']) == set(own)
    key = 'backbone.layer4.2.attention.edges.1.0.weight'
    if key not in own:  # robust to the block's key layout
        key = next(k for k in own if '.attention.' in k)
    assert torch.equal(data['state_dict'][key], own[key])


def test_test_tool_reports_top1_top5(imagenet_run, tiny_imagenet, tmp_path):
    from mmengine.config import Config
    _, ckpt, _ = imagenet_run
    cfg_file = config_path('imagenet/sase_r50_8xb16_in1k.py')
    opts = imagenet_options(Config.fromfile(cfg_file), tiny_imagenet)
    out = tmp_path / 'preds.pkl'
    metrics = load_tool('test').main(
        [cfg_file, ckpt, '--work-dir', str(tmp_path), '--out', str(out)] +
        as_argv(opts))
    for key in ('accuracy/top1', 'accuracy/top5'):
        assert key in metrics, metrics
        assert 0.0 <= float(metrics[key]) <= 100.0
    # Every top-1 hit is a top-5 hit.
    assert metrics['accuracy/top5'] >= metrics['accuracy/top1']
    assert out.is_file() and out.stat().st_size > 0


def test_resume_continues_from_latest_checkpoint(imagenet_run, tiny_imagenet):
    """`--resume` (no path): the latest checkpoint of the work dir, with
    its optimizer and message hub, through torch's safe loader."""
    from mmengine.config import Config
    work_dir, ckpt, _ = imagenet_run
    cfg_file = config_path('imagenet/sase_r50_8xb16_in1k.py')
    opts = imagenet_options(Config.fromfile(cfg_file), tiny_imagenet)
    opts['train_cfg.max_epochs'] = 2
    runner = load_tool('train').main(
        [cfg_file, '--work-dir', work_dir, '--resume', '--no-validate'] +
        as_argv(opts))
    # Started at epoch 1 / iteration 3, not from scratch.
    assert runner.epoch == 2 and runner.iter == 6
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    saved = load_checkpoint(ckpt)
    assert saved['meta']['epoch'] == 1 and saved['meta']['iter'] == 3
