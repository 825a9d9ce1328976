"""Fixtures for the tool tests: tiny datasets and one tiny ImageNet training
run shared by the end-to-end tests (SASE, arXiv 2411.08333)."""
import os.path as osp
import sys

import pytest

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from data_utils import make_coco_dataset, make_imagenet_dataset  # noqa: E402
from data_utils.tool_runs import (as_argv, config_path,  # noqa: E402
                                  imagenet_options, load_tool)


@pytest.fixture(scope='session')
def tiny_coco(tmp_path_factory):
    """A COCO-format set: 2 train and 2 val images of 160x128."""
    root = tmp_path_factory.mktemp('coco')
    make_coco_dataset(str(root), num_images=2, size=(160, 128))
    return str(root)


@pytest.fixture(scope='session')
def tiny_imagenet(tmp_path_factory):
    """An ImageNet-format set (mmpretrain layout): 3 classes x 2 images."""
    root = tmp_path_factory.mktemp('imagenet')
    make_imagenet_dataset(str(root), num_classes=3, images_per_class=2,
                          size=72)
    return str(root)


@pytest.fixture(scope='session')
def imagenet_run(tiny_imagenet, tmp_path_factory):
    """Trains the SASE R50 classifier one epoch (3 iterations of 2 images at
    64 px) through tools/train.py with the real ImageNet config; returns
    (work_dir, checkpoint path, runner)."""
    from mmengine.config import Config
    train = load_tool('train')
    cfg_file = config_path('imagenet/sase_r50_8xb16_in1k.py')
    import sase_mm  # noqa: F401  (the sase_mm:: / mmpretrain:: bases)
    opts = imagenet_options(Config.fromfile(cfg_file), tiny_imagenet)
    work_dir = str(tmp_path_factory.mktemp('imagenet_work'))
    runner = train.main([cfg_file, '--work-dir', work_dir] + as_argv(opts))
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    return work_dir, ckpt, runner


