"""End to end on CPU: Faster and Mask R-CNN with the SASE ResNet-50 backbone
(SASE, arXiv 2411.08333) train through tools/train.py with the real configs'
pipelines on a tiny COCO-format set, evaluate with mmdet's CocoMetric
(pycocotools), write checkpoints, and tools/test.py evaluates them.

Faster R-CNN starts from the tiny ImageNet run's classifier checkpoint (the
paper's recipe: backbone from the ImageNet-trained SASE ResNet)."""
import json
import os
import os.path as osp
import subprocess
import sys

import torch
from data_utils.tool_runs import (REPO, as_argv, coco_options, config_path,
                                  load_tool)

from sase_mm.utils import load_checkpoint


def _train(cfg_file, data_root, work_dir, extra=None):
    from mmengine.config import Config
    import sase_mm  # noqa: F401  (sase_mm:: / mmdet:: bases)
    opts = coco_options(Config.fromfile(cfg_file), data_root)
    opts.update(extra or {})
    return load_tool('train').main([cfg_file, '--work-dir', work_dir] +
                                   as_argv(opts))


def _assert_ap(metrics, prefix, keys=('mAP', 'mAP_50', 'mAP_75')):
    for k in keys:
        key = f'coco/{prefix}_{k}'
        assert key in metrics, sorted(metrics)
        value = float(metrics[key])
        assert 0.0 <= value <= 1.0, (key, value)


def test_faster_rcnn_from_imagenet_backbone(imagenet_run, tiny_coco,
                                            tmp_path):
    _, cls_ckpt, _ = imagenet_run
    cfg_file = config_path('faster_rcnn/sase_r50_fpn_1x_coco.py')
    work_dir = str(tmp_path / 'work')
    runner = _train(cfg_file, tiny_coco, work_dir,
                    {'model.backbone.init_cfg.checkpoint': cls_ckpt})
    assert runner.iter == 1 and runner.epoch == 1
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(ckpt)

    # The backbone came from the classifier: every key loaded (the check in
    # tools/train.py raises otherwise) and the frozen stem / stage 1
    # (frozen_stages=1) still hold the classifier's tensors exactly.
    from sase_mm.apis.preflight import check_pretrained_matches
    backbone = runner.model.backbone
    report = check_pretrained_matches(
        backbone, dict(checkpoint=cls_ckpt, prefix='backbone.'))
    assert report['missing'] == [] and report['unexpected'] == []
    cls_state = load_checkpoint(cls_ckpt)['state_dict']
    det_state = backbone.state_dict()
    frozen = [k for k in det_state if k.startswith(('conv1.', 'bn1.',
                                                    'layer1.'))]
    assert any('.attention.' in k for k in frozen)
    for k in frozen:
        assert torch.equal(det_state[k], cls_state['backbone.' + k]), k
    # Validation ran with CocoMetric.
    assert 'val/coco/bbox_mAP' in runner.message_hub.log_scalars

    # tools/test.py on the written checkpoint.
    metrics = load_tool('test').main(
        [cfg_file, ckpt, '--work-dir', str(tmp_path / 'test'),
         '--out', str(tmp_path / 'dets.pkl')] +
        as_argv(coco_options(runner.cfg, tiny_coco)))
    _assert_ap(metrics, 'bbox')
    assert (tmp_path / 'dets.pkl').stat().st_size > 0


def test_mask_rcnn_train_then_test_cli(tiny_coco, tmp_path):
    """Mask R-CNN from scratch (init_cfg=None); tools/test.py runs as a
    command in a fresh process, so the checkpoint loads through torch's
    safe default with only what `import sase_mm` allow-lists."""
    cfg_file = config_path('mask_rcnn/sase_r50_fpn_1x_coco.py')
    work_dir = str(tmp_path / 'work')
    runner = _train(cfg_file, tiny_coco, work_dir,
                    {'model.backbone.init_cfg': None})
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    assert 'val/coco/segm_mAP' in runner.message_hub.log_scalars

    test_dir = tmp_path / 'test'
    env = dict(os.environ, OMP_NUM_THREADS='1',  # see conftest.py
               PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'test.py'), cfg_file, ckpt,
         '--work-dir', str(test_dir)] +
        as_argv(coco_options(runner.cfg, tiny_coco)),
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # mmengine writes the test metrics as JSON in <work_dir>/<timestamp>/.
    logs = [osp.join(d, f) for d, _, fs in os.walk(test_dir) for f in fs
            if f.endswith('.json') and 'vis_data' not in d]
    assert logs, list(os.walk(test_dir))
    with open(logs[0]) as f:
        metrics = json.loads(f.read().strip().splitlines()[-1])
    _assert_ap(metrics, 'bbox')
    _assert_ap(metrics, 'segm')
