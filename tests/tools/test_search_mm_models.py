"""End to end: a SASE search (arXiv 2411.08333; DARTS, docs/spec.md section
3) on the user's own model and data, through tools/search.py, then a
training config built from the written genotype trains for one iteration.

Two runs on tiny data the tests write: an mmpretrain ImageClassifier
(SASEResNet-18 + SASESearch) on an image folder
(configs/search/sase_r18_imagenet_folder.py), and an mmdet Faster R-CNN on
a COCO-format set with boxes and masks
(configs/search/sase_faster_rcnn_r50_fpn_coco.py), each shrunk with
--cfg-options (8 base channels, 32 x 32 / 64 x 64 images, one epoch of a
few iterations). Both parameter sets change, the files are written, and the
lines genotype.py's header gives make the matching training config."""
import os.path as osp
import re

import pytest
import torch
from data_utils.tiny_datasets import (make_coco_dataset,
                                      make_imagenet_dataset,
                                      make_image_folder)
from data_utils.tool_runs import (as_argv, coco_options, config_path,
                                  imagenet_options, load_tool)

from sase_mm.models.sase import Genotype
from sase_mm.apis.preflight import MissingDataError

HALVES = ('train_dataloader', 'train_cfg.search_dataloader')


@pytest.fixture
def initial_state(monkeypatch):
    """The search model's state when the loop starts (after the runner has
    initialised the weights)."""
    from sase_mm.engine.darts_loop import DARTSLoop
    from sase_mm.utils.unwrap import unwrap_model
    seen = {}
    check = DARTSLoop.check_set_up

    def spy(self):
        seen.update({k: v.detach().clone() for k, v in unwrap_model(
            self.runner.model).state_dict().items()})
        return check(self)

    monkeypatch.setattr(DARTSLoop, 'check_set_up', spy)
    return seen


def _search(cfg_file, opts, work_dir):
    return load_tool('search').main([cfg_file, '--work-dir', work_dir,
                                     '--no-validate'] + as_argv(opts))


def _check_search(runner, initial, work_dir, plots=True):
    assert runner.iter >= 2
    final = runner.model.state_dict()
    assert not torch.equal(final['alphas'], initial['alphas'])
    moved = [k for k in final if k.startswith('supernet.') and
             final[k].is_floating_point() and 'running' not in k
             and not torch.equal(final[k], initial[k])]
    assert any('attention.edges' in k for k in moved)  # the supernet's
    assert any('conv1.weight' in k for k in moved)  # weights both moved
    for name in ('genotype.json', 'genotype.py', 'epoch_1.pth') + (
            ('alphas_heatmap.png', ) if plots else ()):
        assert osp.isfile(osp.join(work_dir, name)), name
    path = osp.join(work_dir, 'genotype.py')
    genotype = Genotype.load(path)
    assert genotype == runner.model.genotype()
    return path, genotype


def _training_config(genotype_py, tmp_path):
    """The config of the two lines genotype.py's header spells."""
    header = open(genotype_py).read()
    lines = re.findall(r'^#   (.*)$', header, flags=re.M)
    assert len(lines) == 2 and lines[0].startswith('_base_ = ['), header
    cfg = tmp_path / 'train_searched.py'
    cfg.write_text('\n'.join(lines) + '\n')
    return str(cfg)


def _shrink_halves(opts, dataset_opts):
    for half in HALVES:
        for key, value in dataset_opts.items():
            opts[f'{half}.{key}'] = value


def test_classifier_search_on_an_image_folder(tmp_path, initial_state):
    root = make_image_folder(str(tmp_path / 'folder'), num_classes=2,
                             images_per_class=4, size=32)
    opts = {'model.supernet.backbone.stem_channels': 8,
            'model.supernet.backbone.base_channels': 8,
            'model.supernet.head.in_channels': 64,
            'model.supernet.head.num_classes': 2,
            'model.supernet.data_preprocessor.num_classes': 2,
            'train_cfg.max_epochs': 1, 'default_hooks.logger.interval': 1,
            'randomness.seed': 0}
    _shrink_halves(opts, {'batch_size': 2, 'num_workers': 0,
                          'persistent_workers': False,
                          'dataset.dataset.data_root': root,
                          'dataset.dataset.pipeline.1.scale': 32})
    work = str(tmp_path / 'search')
    runner = _search(config_path('search/sase_r18_imagenet_folder.py'),
                     opts, work)
    assert runner.iter == 2  # 8 images: two halves of 4, batches of 2
    genotype_py, genotype = _check_search(runner, initial_state, work)

    # The searched block trains in the ImageNet config (tiny set, 1 iter).
    data = str(tmp_path / 'imagenet')
    make_imagenet_dataset(data, num_classes=2, images_per_class=1, size=40)
    train_cfg = _training_config(genotype_py, tmp_path)
    from mmengine.config import Config
    opts = imagenet_options(Config.fromfile(train_cfg), data, size=32)
    trained = load_tool('train').main([train_cfg, '--work-dir',
                                       str(tmp_path / 'train'),
                                       '--no-validate'] + as_argv(opts))
    assert trained.iter == 1
    blocks = [m for m in trained.model.modules()
              if type(m).__name__ == 'SASE']
    assert blocks and all(b.genotype == genotype for b in blocks)


def test_detector_search_on_a_coco_set(tmp_path, initial_state):
    coco = str(tmp_path / 'coco')
    make_coco_dataset(coco, num_images=4, size=(64, 64))
    cfg_file = config_path('search/sase_faster_rcnn_r50_fpn_coco.py')
    opts = {'model.supernet.backbone.depth': 18,
            'model.supernet.backbone.stem_channels': 8,
            'model.supernet.backbone.base_channels': 8,
            'model.supernet.neck.in_channels': '[8,16,32,64]',  # a list
            'model.supernet.neck.out_channels': 16,
            'model.supernet.rpn_head.in_channels': 16,
            'model.supernet.rpn_head.feat_channels': 16,
            'model.supernet.roi_head.bbox_roi_extractor.out_channels': 16,
            'model.supernet.roi_head.bbox_head.in_channels': 16,
            'model.supernet.roi_head.bbox_head.fc_out_channels': 32,
            'model.supernet.train_cfg.rpn_proposal.nms_pre': 100,
            'model.supernet.train_cfg.rpn_proposal.max_per_img': 32,
            'model.supernet.train_cfg.rcnn.sampler.num': 16,
            'train_cfg.max_epochs': 1, 'default_hooks.logger.interval': 1,
            'randomness.seed': 0,
            # CPU time: the plots are the classifier run's to check.
            'custom_hooks.0.plot': False}
    _shrink_halves(opts, {'batch_size': 1, 'num_workers': 0,
                          'persistent_workers': False,
                          'dataset.dataset.data_root': coco + '/',
                          'dataset.dataset.pipeline.2.scale': (64, 64)})
    work = str(tmp_path / 'search')
    runner = _search(cfg_file, opts, work)
    assert runner.iter == 2  # 4 images: two halves of 2, batches of 1
    genotype_py, genotype = _check_search(runner, initial_state, work,
                                          plots=False)

    # The searched block trains in the Faster R-CNN config (1 iteration,
    # from scratch: the ImageNet backbone is not part of this test).
    train_cfg = _training_config(genotype_py, tmp_path)
    from mmengine.config import Config
    opts = coco_options(Config.fromfile(train_cfg), coco, scale=(64, 64))
    opts.update({'model.backbone.init_cfg': None,
                 'train_dataloader.dataset.indices': 2,
                 # CPU time: the same detector, 1/16 as wide.
                 'model.backbone.stem_channels': 8,
                 'model.backbone.base_channels': 4,
                 'model.neck.in_channels': '[16,32,64,128]',  # a list
                 'model.neck.out_channels': 16,
                 'model.rpn_head.in_channels': 16,
                 'model.rpn_head.feat_channels': 16,
                 'model.roi_head.bbox_roi_extractor.out_channels': 16,
                 'model.roi_head.bbox_head.in_channels': 16,
                 'model.roi_head.bbox_head.fc_out_channels': 32})
    trained = load_tool('train').main([train_cfg, '--work-dir',
                                       str(tmp_path / 'train'),
                                       '--no-validate'] + as_argv(opts))
    assert trained.iter == 1
    blocks = [m for m in trained.model.backbone.modules()
              if type(m).__name__ == 'SASE']
    assert len(blocks) == 16 and all(b.genotype == genotype for b in blocks)


@pytest.mark.parametrize('rel,layout', [
    ('search/sase_r18_imagenet_folder.py', 'CustomDataset layout'),
    ('search/sase_faster_rcnn_r50_fpn_coco.py', 'instances_train2017.json'),
    ('search/sase_r20_cifar100.py', 'cifar-100-python/meta'),
])
def test_missing_data_names_the_path_and_the_layout(rel, layout, tmp_path):
    search = load_tool('search')
    missing = str(tmp_path / 'nowhere')
    from mmengine.config import Config
    cfg = Config.fromfile(config_path(rel))
    leaf = 'dataset.dataset.data_root' if 'SearchSplit' in str(
        cfg.train_dataloader.dataset.type) else 'dataset.data_root'
    args = [config_path(rel), '--work-dir', str(tmp_path / 'w'),
            '--cfg-options'] + [f'{h}.{leaf}={missing}' for h in HALVES]
    if 'cifar' in rel:
        args.append(f'val_dataloader.dataset.data_root={missing}')
    else:
        args[3:3] = ['--no-validate']
    with pytest.raises(MissingDataError) as err:
        search.precheck(search.build_config(search.parse_args(args)))
    msg = str(err.value)
    assert missing in msg and layout in msg
    assert not osp.exists(str(tmp_path / 'w'))
