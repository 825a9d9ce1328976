"""tools/analysis/complexity.py: parameters and FLOPs of a config's model,
checked against the SASE paper's counts (arXiv 2411.08333; docs/spec.md
section 6)."""
import json
import math

from data_utils.tool_runs import config_path, load_tool

IMAGENET = config_path('imagenet/sase_r50_8xb16_in1k.py')


def test_classifier_counts_match_paper(capsys):
    import sase_mm  # noqa: F401
    tool = load_tool('analysis/complexity')
    sase = tool.main([IMAGENET, '--shape', '64', '64'])
    out = capsys.readouterr().out
    assert 'params:' in out and 'flops:' in out
    plain = tool.main([IMAGENET, '--no-flops', '--json', '--cfg-options',
                       'model.backbone.attn_cfg=None'])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line['params'] == plain['params'] and line['flops'] is None

    assert plain['attention_params'] == 0
    assert sase['params'] - plain['params'] == sase['attention_params']
    # Paper: ResNet-50 25.56 M, + SASE 28.10 M.
    assert math.isclose(plain['params'] / 1e6, 25.56, abs_tol=0.005)
    assert math.isclose(sase['params'] / 1e6, 28.10, rel_tol=0.01)
    assert sase['shape'] == (64, 64)
    # ResNet-50: 4.1 GMac at 224 px, scaled by (64 / 224)^2; the SASE
    # blocks add about 0.1%.
    assert math.isclose(sase['flops'] / 1e9, 4.1 * (64 / 224) ** 2,
                        rel_tol=0.1)


def test_detector_counts():
    import sase_mm  # noqa: F401
    tool = load_tool('analysis/complexity')
    res = tool.main([config_path('faster_rcnn/sase_r50_fpn_1x_coco.py'),
                     '--shape', '64', '96'])
    assert res['shape'] == (64, 96)
    # More than the backbone alone at this size (FPN, RPN, RoI head).
    assert res['flops'] > 4.1e9 * (64 * 96) / 224 ** 2
    assert res['params'] > res['backbone_params'] > res['attention_params']
    assert res['attention_params'] > 2e6
    # Paper: Faster R-CNN R50 + SASE 44.3 M (mmdet's 80-class heads; see
    # docs/downstream.md for the difference).
    assert math.isclose(res['params'] / 1e6, 44.3, rel_tol=0.02)
    # Without attention: mmdet's Faster R-CNN R50-FPN, 41.75 M in all; the
    # paper's 41.5 M is the trainable part (stem and stage 1 are frozen).
    plain = tool.main([config_path('faster_rcnn/sase_r50_fpn_1x_coco.py'),
                       '--no-flops', '--cfg-options',
                       'model.backbone.attn_cfg=None'])
    assert math.isclose(plain['trainable_params'] / 1e6, 41.5, abs_tol=0.05)
    assert plain['params'] - plain['trainable_params'] > 2e5
