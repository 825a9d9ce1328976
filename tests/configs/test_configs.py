"""Every config under configs/ loads and builds; the SASE (arXiv 2411.08333)
downstream configs also run one loss-mode forward on CPU and follow the
paper's schedules (docs/spec.md section 5); the baselines differ from the SASE
configs in the attention block alone; a downstream project inherits them
through ``sase_mm::``."""
import copy
import glob
import math
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_ROOT = osp.join(REPO, 'configs')
ALL_CONFIGS = sorted(
    osp.relpath(p, CONFIG_ROOT)
    for p in glob.glob(osp.join(CONFIG_ROOT, '**', '*.py'), recursive=True)
    if '_base_' not in osp.relpath(p, CONFIG_ROOT).split(osp.sep))
# Configs of this issue (downstream); others (e.g. search/) load and build.
DOWNSTREAM = ('faster_rcnn', 'mask_rcnn', 'imagenet')
ATTENTION = {'plain': None, 'se': 'SE', 'eca': 'ECA', 'cbam': 'CBAM',
             'srm': 'SRM', 'gct': 'GCT', 'gsop': 'GSoP', 'mca': 'MCA',
             'ean': 'EAN', 'ssa': 'SSA'}


def load(rel):
    import sase_mm  # noqa: F401  (sase_mm:: bases, custom types)
    from mmengine.config import Config
    return Config.fromfile(osp.join(CONFIG_ROOT, rel))


def shrink(cfg):
    """Fewer proposals and sampled RoIs for the CPU forward (the 1024
    RoIs of mmdet's defaults make the box head cost 13 GFLOPs)."""
    train_cfg = cfg.model.get('train_cfg') or {}
    if 'rpn_proposal' in train_cfg:
        train_cfg.rpn_proposal.update(nms_pre=100, max_per_img=32)
        train_cfg.rcnn.sampler.num = 16
    return cfg


def build(cfg):
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    return MODELS.build(cfg.model)


def _total_loss(losses):
    total = 0.0
    for name, value in losses.items():
        if 'loss' not in name:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            assert torch.isfinite(v).all(), (name, v)
            total = total + v.sum()
    return total


def _forward_loss(model, cfg):
    """One training forward on two tiny fake samples; returns the loss."""
    model.train()
    if cfg.get('default_scope') == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        with_mask = 'mask_head' in cfg.model.get('roi_head', {})
        packed = demo_mm_inputs(1, [(3, 64, 80)], num_items=[2],
                                num_classes=80, with_mask=with_mask)
    else:
        from mmpretrain.structures import DataSample
        packed = dict(
            inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
                    for _ in range(2)],
            data_samples=[DataSample().set_gt_label(i) for i in (3, 999)])
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    total = _total_loss(losses)
    assert float(total) > 0
    return total


@pytest.mark.parametrize('rel', ALL_CONFIGS)
def test_config_loads_and_builds(rel):
    cfg = shrink(load(rel))
    model = build(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0
    if rel.split(osp.sep)[0] not in DOWNSTREAM:
        return
    # Downstream: the SASE backbone and one loss-mode forward.
    assert cfg.model.backbone.type == 'sase_mm.SASEResNet'
    assert 'sase_mm' in cfg.custom_imports.imports
    if 'baselines' in rel:
        # CPU time: the baselines share everything but the attention with
        # the SASE configs, whose backward is tested below.
        with torch.no_grad():
            _forward_loss(model, cfg)
        return
    total = _forward_loss(model, cfg)
    total.backward()
    grads = [p.grad for p in model.backbone.layer4.parameters()
             if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_every_downstream_config_is_tested():
    # The parametrization above found the files this issue ships.
    names = {osp.basename(r) for r in ALL_CONFIGS}
    for n in ('sase_r50_fpn_1x_coco.py', 'sase_r101_fpn_1x_coco.py',
              'sase_r50_8xb16_in1k.py', 'sase_r101_8xb16_in1k.py'):
        assert n in names
    assert sum(r.startswith('mask_rcnn') for r in ALL_CONFIGS) == 2
    assert sum('baselines' in r for r in ALL_CONFIGS) == 2 * len(ATTENTION)


def _urls(obj):
    """Every string in a nested config that names a download."""
    if isinstance(obj, dict):
        return [u for v in obj.values() for u in _urls(v)]
    if isinstance(obj, (list, tuple)):
        return [u for v in obj for u in _urls(v)]
    if isinstance(obj, str) and '://' in obj:
        return [obj]
    return []


@pytest.mark.parametrize(
    'rel', [r for r in ALL_CONFIGS if r.split(osp.sep)[0] in DOWNSTREAM])
def test_no_weights_are_downloaded(rel):
    cfg = load(rel)
    assert _urls(cfg.model) == []
    assert not cfg.get('load_from')
    init = cfg.model.backbone.get('init_cfg')
    if rel.startswith('imagenet'):
        assert init is None  # from scratch (paper)
    else:
        assert init['type'] == 'Pretrained'
        assert init['prefix'] == 'backbone.'
        assert init['checkpoint'] == cfg.pretrained
        assert not osp.isabs(init['checkpoint'])


PAPER_DETECTION = {  # (depth, total batch, lr): docs/spec.md section 5
    'faster_rcnn/sase_r50_fpn_1x_coco.py': (50, 8, 0.01),
    'faster_rcnn/sase_r101_fpn_1x_coco.py': (101, 4, 0.005),
    'mask_rcnn/sase_r50_fpn_1x_coco.py': (50, 8, 0.01),
    'mask_rcnn/sase_r101_fpn_1x_coco.py': (101, 4, 0.005),
}


def _scaled_lr(cfg, num_gpus):
    """The lr mmengine's auto-scale-lr gives (Runner.scale_lr's rule)."""
    real_bs = num_gpus * cfg.train_dataloader.batch_size
    return cfg.optim_wrapper.optimizer.lr * real_bs / \
        cfg.auto_scale_lr.base_batch_size


@pytest.mark.parametrize('rel', sorted(PAPER_DETECTION))
def test_detection_schedule_follows_paper(rel):
    depth, batch, lr = PAPER_DETECTION[rel]
    cfg = load(rel)
    assert cfg.model.backbone.depth == depth
    assert cfg.model.backbone.attn_cfg.type == 'sase_mm.SASE'
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == \
        ('SGD', lr, 0.9, 1e-4)
    assert cfg.train_cfg.max_epochs == 12
    steps = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR']
    assert len(steps) == 1 and steps[0].milestones == [8, 11]
    assert steps[0].gamma == 0.1
    # auto-scale-lr: the paper's total batch keeps the paper's lr, and any
    # other batch scales linearly (0.00125 per image, mmdet's rate).
    assert cfg.auto_scale_lr.base_batch_size == batch
    assert cfg.auto_scale_lr.enable is False
    gpus = batch // cfg.train_dataloader.batch_size
    assert math.isclose(_scaled_lr(cfg, gpus), lr)
    assert math.isclose(_scaled_lr(cfg, 8) / (8 * 2), 0.01 / 8)
    # mmdet's defaults otherwise: dataset, pipeline, heads.
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'
    assert cfg.model.roi_head.bbox_head.num_classes == 80
    assert cfg.model.backbone.frozen_stages == 1
    assert cfg.model.backbone.norm_eval is True


@pytest.mark.parametrize('rel', ['imagenet/sase_r50_8xb16_in1k.py',
                                 'imagenet/sase_r101_8xb16_in1k.py'])
def test_imagenet_schedule_follows_paper(rel):
    cfg = load(rel)
    assert cfg.model.backbone.depth == (101 if 'r101' in rel else 50)
    assert cfg.model.head.num_classes == 1000
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == \
        ('SGD', 0.05, 0.9, 1e-4)
    assert cfg.train_cfg.max_epochs == 100
    sched = cfg.param_scheduler
    sched = sched if isinstance(sched, dict) else (
        sched[0] if len(sched) == 1 else None)
    assert sched is not None, cfg.param_scheduler
    assert sched.type == 'CosineAnnealingLR' and sched.by_epoch
    assert (sched.T_max, sched.eta_min, sched.begin, sched.end) == \
        (100, 0.0, 0, 100)
    # 8 GPUs x 16 = 128, the paper's batch, keeps lr 0.05.
    assert cfg.train_dataloader.batch_size * 8 == 128
    assert cfg.auto_scale_lr.base_batch_size == 128
    assert math.isclose(_scaled_lr(cfg, 8), 0.05)
    # Standard ResNet augmentation and data layout.
    train_types = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert 'RandomResizedCrop' in train_types and 'RandomFlip' in train_types
    crop = cfg.train_dataloader.dataset.pipeline[
        train_types.index('RandomResizedCrop')]
    assert crop.scale == 224
    for loader in ('train_dataloader', 'val_dataloader'):
        assert cfg[loader].dataset.data_root == 'data/imagenet'


def _without(cfg_dict, drop):
    out = copy.deepcopy(cfg_dict)
    for path in drop:
        node = out
        *parents, last = path.split('.')
        for p in parents:
            node = node.get(p) or {}
        node.pop(last, None)
    return out


@pytest.mark.parametrize('name', sorted(ATTENTION))
@pytest.mark.parametrize('task', ['imagenet', 'faster_rcnn'])
def test_baseline_differs_only_in_attention(task, name):
    if task == 'imagenet':
        rel, base = (f'imagenet/baselines/r50_{name}_8xb16_in1k.py',
                     'imagenet/sase_r50_8xb16_in1k.py')
    else:
        rel, base = (f'faster_rcnn/baselines/r50_{name}_fpn_1x_coco.py',
                     'faster_rcnn/sase_r50_fpn_1x_coco.py')
    cfg, ref = load(rel), load(base)
    attn = cfg.model.backbone.attn_cfg
    if ATTENTION[name] is None:
        assert attn is None
    else:
        assert dict(attn) == dict(type=f'sase_mm.{ATTENTION[name]}')
    drop = ['model.backbone.attn_cfg', 'model.backbone.init_cfg.checkpoint',
            'pretrained', 'filename']
    assert _without(cfg.to_dict(), drop) == _without(ref.to_dict(), drop)
    if task == 'faster_rcnn':
        # Its own ImageNet baseline as the backbone.
        assert cfg.model.backbone.init_cfg.checkpoint == \
            f'checkpoints/r50_{name}_8xb16_in1k.pth'
        assert osp.isfile(osp.join(
            CONFIG_ROOT, 'imagenet', 'baselines',
            f'r50_{name}_8xb16_in1k.py'))


def test_downstream_project_inherits_installed_configs(tmp_path,
                                                       monkeypatch):
    """A project elsewhere inherits sase_mm::, swaps one field, builds."""
    project = tmp_path / 'my_project' / 'configs'
    project.mkdir(parents=True)
    (project / 'my_faster_rcnn.py').write_text(
        "_base_ = 'sase_mm::faster_rcnn/sase_r50_fpn_1x_coco.py'\n"
        "model = dict(roi_head=dict(bbox_head=dict(num_classes=3)))\n")
    monkeypatch.chdir(tmp_path / 'my_project')
    import sase_mm  # noqa: F401
    from mmengine.config import Config
    cfg = Config.fromfile('configs/my_faster_rcnn.py')
    assert cfg.model.backbone.type == 'sase_mm.SASEResNet'
    assert cfg.optim_wrapper.optimizer.lr == 0.01
    model = build(cfg)
    assert model.roi_head.bbox_head.fc_cls.out_features == 3 + 1
    assert type(model.backbone).__name__ == 'SASEResNet'
