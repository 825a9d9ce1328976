"""tools/visualization/vis_cam.py: the SASE paper's Grad-CAM comparison
figure (arXiv 2411.08333) as a grid, on scikit-learn's sample photographs
with random weights: the layout and that the maps differ between models,
not what they look like."""
import os.path as osp

import numpy as np
import pytest
import torch

from data_utils.tool_runs import config_path, help_text, load_tool

pytest.importorskip('pytorch_grad_cam')
tool = load_tool('visualization/vis_cam')
SIZE = 64
# ResNet-18 versions of the five default configs: the same attention
# modules after every residual block, a fifth of the time.
SMALL = ['--cfg-options', 'model.backbone.depth=18',
         'model.head.in_channels=512']


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """scikit-learn's two photographs, written as image files."""
    import cv2
    from sklearn.datasets import load_sample_images
    out = tmp_path_factory.mktemp('photos')
    paths = []
    for name, img in zip(load_sample_images().filenames,
                         load_sample_images().images):
        path = str(out / (osp.splitext(osp.basename(name))[0] + '.jpg'))
        small = cv2.resize(img, (96, 72), interpolation=cv2.INTER_AREA)
        cv2.imwrite(path, small[..., ::-1])
        paths.append(path)
    return paths


def _expected_shape(rows, cols):
    return (tool.HEADER + rows * (SIZE + tool.PAD) + tool.PAD,
            (cols + 1) * (SIZE + tool.PAD) + tool.PAD, 3)


def test_default_grid_plain_se_cbam_eca_sase(photos, tmp_path, capsys):
    import cv2
    out = str(tmp_path / 'grid.png')
    with pytest.warns(UserWarning, match='random weights'):
        res = tool.main(['--img', *photos, '--img-size', str(SIZE), '--out',
                         out] + SMALL)
    assert res['labels'] == ['ResNet-18', 'SE', 'CBAM', 'ECA', 'SASE']
    assert res['target_layers'] == [['backbone.layer4']] * 5
    # One row per image, the input then one column per model.
    png = cv2.imread(out)
    assert png.shape == _expected_shape(2, 5) == res['grid'].shape
    np.testing.assert_array_equal(png[..., ::-1], res['grid'])
    cams = res['cams']
    assert cams.shape == (2, 5, SIZE, SIZE)
    assert np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1
    # Every model's map differs from every other model's, on each image.
    for i in range(2):
        for a in range(5):
            for b in range(a + 1, 5):
                assert np.abs(cams[i, a] - cams[i, b]).max() > 1e-2, (
                    i, res['labels'][a], res['labels'][b])
    # The first cell of each row is the image, loaded, resized (short side)
    # and centre-cropped to --img-size by mmpretrain's own transforms.
    from mmcv.transforms import CenterCrop, LoadImageFromFile
    from mmpretrain.datasets.transforms import ResizeEdge
    data = LoadImageFromFile()(dict(img_path=photos[0]))
    data = ResizeEdge(scale=SIZE, edge='short',
                      interpolation='bicubic')(data)
    expected = CenterCrop(crop_size=SIZE)(data)['img']  # BGR, as cv2 reads
    y0, x0 = tool.HEADER, tool.PAD
    np.testing.assert_array_equal(png[y0:y0 + SIZE, x0:x0 + SIZE], expected)
    assert 'SASE: gradcam of backbone.layer4' in capsys.readouterr().out


@pytest.mark.parametrize('config, kept', [
    ('imagenet/sase_r50_8xb16_in1k.py', ['LoadImageFromFile', 'PackInputs']),
    ('faster_rcnn/sase_r50_fpn_1x_coco.py',
     ['LoadImageFromFile', 'LoadAnnotations', 'PackDetInputs'])])
def test_the_configs_own_test_pipeline_at_img_size(config, kept):
    """Its loading and packing stay; its resize and crop are --img-size's
    (every column the same square)."""
    from mmengine.config import Config
    steps = tool.test_pipeline(Config.fromfile(config_path(config)), 96)
    assert [t['type'] for t in steps if 'mmpretrain.' not in t['type']] == \
        kept
    assert steps[1:3] == [
        dict(type='mmpretrain.ResizeEdge', scale=96, edge='short',
             interpolation='bicubic'),
        dict(type='mmpretrain.CenterCrop', crop_size=96)]


def test_method_by_name_checkpoint_and_target_layer(photos, tmp_path):
    from mmengine.config import Config
    cfg_file = config_path('imagenet/sase_r50_8xb16_in1k.py')
    # A checkpoint made here: the seed-1 initialisation.
    model, _ = tool.build_model(
        cfg_file, None, {'model.backbone.depth': 18,
                         'model.head.in_channels': 512}, 'cpu', seed=1)
    ckpt = str(tmp_path / 'm.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    common = ['--img', photos[0], '--img-size', str(SIZE), '--method',
              'GradCAM++', '--target-layers', 'backbone.layer3',
              '--target-category', '3'] + SMALL
    loaded = tool.main([cfg_file, '--checkpoint', ckpt, '--out',
                        str(tmp_path / 'a.png')] + common)
    seeded = tool.main([cfg_file, '--seed', '1', '--out',
                        str(tmp_path / 'b.png')] + common)
    assert loaded['target_layers'] == [['backbone.layer3']]
    np.testing.assert_allclose(loaded['cams'], seeded['cams'], atol=1e-5)
    assert loaded['grid'].shape == _expected_shape(1, 1)
    assert Config.fromfile(cfg_file).model.backbone.depth == 50  # untouched


def test_detector_shows_the_backbones_last_stage(photos, tmp_path):
    # (An untrained detector's Grad-CAM is often 0 everywhere: no position
    # raises its objectness; Grad-CAM++ weighs positive gradients only.)
    res = tool.main([config_path('faster_rcnn/sase_r50_fpn_1x_coco.py'),
                     '--img', photos[1], '--img-size', str(SIZE), '--method',
                     'gradcam++', '--out', str(tmp_path / 'det.png')])
    assert res['target_layers'] == [['backbone.layer4']]
    assert res['labels'] == ['FasterRCNN + SASE']
    assert res['cams'].shape == (1, 1, SIZE, SIZE)
    assert np.isfinite(res['cams']).all() and res['cams'].max() > 0


def test_bad_arguments(photos, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        tool.parse_args(['--img', photos[0], '--out', 'x.png', '--method',
                         'nocam'])
    assert err.value.code == 2
    assert 'gradcam++' in capsys.readouterr().err  # lists the methods
    with pytest.raises(ValueError, match='no module'):
        tool.main([config_path('imagenet/sase_r50_8xb16_in1k.py'), '--img',
                   photos[0], '--img-size', str(SIZE), '--target-layers',
                   'backbone.nope', '--out', str(tmp_path / 'x.png')] + SMALL)
    with pytest.raises(FileNotFoundError):
        tool.main(['--img', str(tmp_path / 'missing.jpg'), '--out',
                   str(tmp_path / 'x.png')])


def test_help(capsys):
    out = help_text(tool, capsys)
    for opt in ('--img', '--checkpoint', '--target-layers', '--method',
                '--out'):
        assert opt in out


def test_searched_genotype_in_the_sase_column(photos, tmp_path):
    from sase_mm.models.sase import Genotype
    path = str(tmp_path / 'genotype.json')
    Genotype.parse(['gap_std', 'conv1d_k5', 'fc', 'l2_norm', 'cov_pool',
                    'sep_conv_5']).save(path)
    configs = [config_path('imagenet/baselines/r50_plain_8xb16_in1k.py'),
               config_path('imagenet/sase_r50_8xb16_in1k.py')]
    common = ['--img', photos[0], '--img-size', str(SIZE)] + SMALL
    searched = tool.main(configs + ['--genotype', path, '--out',
                                    str(tmp_path / 'a.png')] + common)
    paper = tool.main(configs + ['--out', str(tmp_path / 'b.png')] + common)
    assert searched['labels'] == ['ResNet-18', 'SASE (searched)']
    assert paper['labels'] == ['ResNet-18', 'SASE']
    # The plain column is untouched, the SASE column is another block.
    np.testing.assert_allclose(searched['cams'][:, 0], paper['cams'][:, 0],
                               atol=1e-6)
    assert np.abs(searched['cams'][:, 1] - paper['cams'][:, 1]).max() > 1e-2
