"""tools/train.py, tools/test.py, tools/dist_*.sh: options in the
mmdet / mmpretrain shape, and the errors users meet with the SASE
(arXiv 2411.08333) downstream configs: missing data, a missing or unfitting
pretrained backbone, a genotype file that does not parse."""
import json
import os
import os.path as osp
import subprocess

import pytest
import torch
from data_utils.tool_runs import (REPO, as_argv, coco_options, config_path,
                                  imagenet_options, load_tool)

FASTER = config_path('faster_rcnn/sase_r50_fpn_1x_coco.py')
IMAGENET = config_path('imagenet/sase_r50_8xb16_in1k.py')


@pytest.fixture
def train():
    import sase_mm  # noqa: F401
    return load_tool('train')


# ------------------------------------------------------------------ options
def test_train_options_map_to_config(train, tmp_path):
    args = train.parse_args([FASTER, '--amp', '--auto-scale-lr', '--resume',
                             '--cfg-options', 'train_cfg.max_epochs=3'])
    cfg = train.build_config(args)
    if torch.cuda.is_available():  # mmengine's, with a dynamic loss scale
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.loss_scale == 'dynamic'
    else:  # AmpOptimWrapper refuses to build without CUDA: bfloat16 on CPU
        assert cfg.optim_wrapper.type == 'CPUAmpOptimWrapper'
        assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.auto_scale_lr.enable is True
    assert cfg.auto_scale_lr.base_batch_size == 8
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.train_cfg.max_epochs == 3
    assert cfg.work_dir == osp.join('./work_dirs', 'sase_r50_fpn_1x_coco')
    assert cfg.launcher == 'none'

    ckpt = tmp_path / 'epoch_3.pth'
    torch.save(dict(state_dict={}), str(ckpt))
    args = train.parse_args([FASTER, '--resume', str(ckpt),
                             '--work-dir', str(tmp_path), '--no-validate',
                             '--launcher', 'pytorch'])
    cfg = train.build_config(args)
    assert cfg.resume is True and cfg.load_from == str(ckpt)
    assert cfg.work_dir == str(tmp_path) and cfg.launcher == 'pytorch'
    assert cfg.val_cfg is None and cfg.val_dataloader is None
    assert cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper'
    assert cfg.auto_scale_lr.enable is False


def test_resume_from_a_missing_checkpoint_is_an_error(train, tmp_path):
    missing = str(tmp_path / 'nope.pth')
    args = train.parse_args([FASTER, '--resume', missing])
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        train.build_config(args)


def test_test_options_map_to_config(tmp_path):
    import sase_mm  # noqa: F401
    test = load_tool('test')
    args = test.parse_args([IMAGENET, 'x.pth', '--work-dir', str(tmp_path),
                            '--out', 'r.pkl', '--cfg-options',
                            'test_dataloader.batch_size=3'])
    cfg = test.build_config(args)
    assert cfg.load_from == 'x.pth' and cfg.work_dir == str(tmp_path)
    assert cfg.test_dataloader.batch_size == 3
    assert args.out == 'r.pkl'
    with pytest.raises(ValueError, match=r'\.pkl'):
        test._dump_metric(cfg, 'results.json')


@pytest.mark.parametrize('script,argv,nproc,expect', [
    ('dist_train.sh', ['cfg.py', '4', '--amp'], 4,
     ['tools/train.py', 'cfg.py', '--launcher', 'pytorch', '--amp']),
    ('dist_test.sh', ['cfg.py', 'ck.pth', '2', '--out', 'o.pkl'], 2,
     ['tools/test.py', 'cfg.py', 'ck.pth', '--launcher', 'pytorch', '--out',
      'o.pkl']),
    ('dist_search.sh', ['cfg.py', '8', '--resume'], 8,
     ['tools/search.py', 'cfg.py', '--launcher', 'pytorch', '--resume']),
])
def test_dist_scripts_call_torchrun(script, argv, nproc, expect):
    assert os.access(osp.join(REPO, 'tools', script), os.X_OK)
    # PYTHON=echo prints the command the script would run.
    proc = subprocess.run(
        ['bash', osp.join(REPO, 'tools', script)] + argv,
        capture_output=True, text=True, env={'PYTHON': 'echo',
                                             'PATH': '/usr/bin:/bin'})
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert words[:2] == ['-m', 'torch.distributed.run']
    assert f'--nproc_per_node={nproc}' in words
    tail = words[words.index('--master_port=29500') + 1:]
    assert tail[0].endswith(expect[0])
    assert tail[1:] == expect[1:]


# ------------------------------------------------------------------- errors
def test_missing_coco_data_names_files_and_layout(train, tmp_path,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        train.main([FASTER, '--work-dir', str(tmp_path / 'w')])
    msg = str(err.value)
    assert 'data/coco/annotations/instances_train2017.json' in msg
    assert 'data/coco/train2017/' in msg
    assert 'instances_val2017.json' in msg  # validation data too
    assert 'train_dataloader.dataset.data_root' in msg
    assert 'COCO 2017' in msg


def test_missing_imagenet_data_names_files_and_layout(train, tmp_path,
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        train.main([IMAGENET, '--work-dir', str(tmp_path / 'w')])
    msg = str(err.value)
    assert osp.join('data/imagenet', 'train') in msg
    assert 'meta/train.txt' in msg and 'ImageNet-1k' in msg
    test = load_tool('test')
    ckpt = tmp_path / 'c.pth'
    ckpt.write_bytes(b'')
    with pytest.raises(FileNotFoundError, match='data/imagenet'):
        test.main([IMAGENET, str(ckpt)])


def test_missing_checkpoint_for_test(tmp_path):
    import sase_mm  # noqa: F401
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_tool('test').main([IMAGENET, str(tmp_path / 'nope.pth')])


def test_missing_pretrained_backbone_says_where_it_comes_from(
        train, tiny_coco, tmp_path, monkeypatch):
    from mmengine.config import Config
    monkeypatch.chdir(tmp_path)
    opts = coco_options(Config.fromfile(FASTER), tiny_coco)
    with pytest.raises(FileNotFoundError) as err:
        train.main([FASTER, '--work-dir', str(tmp_path / 'w')] +
                   as_argv(opts))
    msg = str(err.value)
    assert 'checkpoints/sase_r50_8xb16_in1k.pth' in msg
    assert 'configs/imagenet/sase_r50_8xb16_in1k.py' in msg
    assert 'model.backbone.init_cfg=None' in msg


def _tiny_backbone(depth, attn=True):
    from sase_mm.models.backbones import SASEResNet
    kwargs = {} if attn else dict(attn_cfg=None)
    return SASEResNet(depth, base_channels=4, stem_channels=4, **kwargs)


@pytest.mark.parametrize('ckpt_depth,ckpt_attn,expect', [
    (101, True, r'ResNet-101.*blocks per stage \(3, 4, 23, 3\).*ResNet-50'),
    (50, False, r'ResNet-50.*no attention modules.*`attention` modules'),
])
def test_unfitting_pretrained_checkpoint(ckpt_depth, ckpt_attn, expect,
                                         tmp_path):
    """A backbone checkpoint of another depth / block is refused with what
    it holds and what the config builds (mmengine only warns)."""
    import sase_mm  # noqa: F401
    from sase_mm.apis.preflight import check_pretrained_matches
    src = _tiny_backbone(ckpt_depth, ckpt_attn)
    path = str(tmp_path / f'r{ckpt_depth}.pth')
    torch.save({'state_dict': {'backbone.' + k: v
                               for k, v in src.state_dict().items()}}, path)
    model = _tiny_backbone(50)
    with pytest.raises(ValueError, match=expect) as err:
        check_pretrained_matches(
            model, dict(checkpoint=path, prefix='backbone.'))
    assert path in str(err.value)
    # The matching checkpoint passes and reports every key loaded.
    ok = str(tmp_path / 'r50.pth')
    torch.save({'state_dict': {'backbone.' + k: v
                               for k, v in model.state_dict().items()}}, ok)
    report = check_pretrained_matches(
        model, dict(checkpoint=ok, prefix='backbone.'))
    assert report['missing'] == [] and report['unexpected'] == []
    with pytest.raises(ValueError, match="no weights under the prefix"):
        check_pretrained_matches(model, dict(checkpoint=ok, prefix='neck.'))


def test_wrong_depth_checkpoint_stops_train(train, imagenet_run, tiny_coco,
                                            tmp_path):
    """tools/train.py: the R50 ImageNet checkpoint for the R101 detector."""
    from mmengine.config import Config
    _, cls_ckpt, _ = imagenet_run
    cfg_file = config_path('faster_rcnn/sase_r101_fpn_1x_coco.py')
    opts = coco_options(Config.fromfile(cfg_file), tiny_coco)
    opts['model.backbone.init_cfg.checkpoint'] = cls_ckpt
    with pytest.raises(ValueError) as err:
        train.main([cfg_file, '--work-dir', str(tmp_path)] + as_argv(opts))
    msg = str(err.value)
    assert cls_ckpt in msg
    assert 'ResNet-50' in msg and 'ResNet-101' in msg
    assert 'layer3.6.' in msg  # the first block the checkpoint lacks


def test_unparsable_genotype_file_names_it(train, tiny_imagenet, tmp_path):
    from mmengine.config import Config
    bad = tmp_path / 'genotype.json'
    bad.write_text(json.dumps({'channel_squeeze': 'gap'}))
    opts = imagenet_options(Config.fromfile(IMAGENET), tiny_imagenet)
    opts['model.backbone.attn_cfg.genotype'] = str(bad)
    with pytest.raises(ValueError) as err:
        train.main([IMAGENET, '--work-dir', str(tmp_path / 'w')] +
                   as_argv(opts))
    msg = str(err.value)
    assert str(bad) in msg
    assert 'genotype' in msg and 'missing' in msg


@pytest.mark.parametrize('script,needed', [('dist_train.sh', 2),
                                           ('dist_test.sh', 3),
                                           ('dist_search.sh', 2)])
def test_dist_scripts_print_usage(script, needed):
    path = osp.join(REPO, 'tools', script)
    env = {'PYTHON': 'false', 'PATH': '/usr/bin:/bin'}
    for flag in ('--help', '-h'):
        proc = subprocess.run(['bash', path, flag], capture_output=True,
                              text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        assert f'bash tools/{script} CONFIG' in proc.stdout
        assert 'Traceback' not in proc.stdout + proc.stderr
    proc = subprocess.run(['bash', path] + ['x'] * (needed - 1),
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert f'needs {needed} arguments' in proc.stderr
    assert f'bash tools/{script} CONFIG' in proc.stderr


def test_genotype_path_is_recorded_as_operations(train, tmp_path):
    """The config a run dumps names the operations, not a file."""
    from sase_mm.models.sase import Genotype
    g = Genotype(['gap', 'fc', 'affine', 'l4_pool', 'gap', 'conv_3x3'])
    path = str(tmp_path / 'genotype.json')
    g.save(path)
    args = train.parse_args([IMAGENET, '--work-dir', str(tmp_path / 'w'),
                             '--cfg-options',
                             f'model.backbone.attn_cfg.genotype={path}'])
    cfg = train.build_config(args)
    assert cfg.model.backbone.attn_cfg.genotype == list(g)
    dumped = tmp_path / 'dumped.py'
    cfg.dump(str(dumped))
    assert 'genotype.json' not in dumped.read_text()
    assert "'conv_3x3'" in dumped.read_text()
