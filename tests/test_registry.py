"""sase_mm's registries seen from mmdet, mmpretrain and mmcv.

SASE (arXiv 2411.08333) is used as a plug-in of OpenMMLab models, so
``type='sase_mm.SASE'`` must build under either downstream scope, through
mmcv's ``build_plugin_layer``, from a config that only lists ``sase_mm`` in
``custom_imports``, and as an mmdet ResNet plugin at ``after_conv3``.
"""
import pytest
import torch

from mmengine.config import Config
from mmengine.registry import DefaultScope

import sase_mm  # noqa: F401  (registers the plugins)
from sase_mm.models.sase import SASE, SASESearch, bind_alphas

from mmcv.cnn import build_plugin_layer
from mmdet.registry import MODELS as mmdet_models
from mmpretrain.registry import MODELS as mmpretrain_models

SASE_KEYS = [
    'edges.0.merge.weight',  # GAP+GMP merge
    'edges.1.reduce.weight', 'edges.1.expand.weight',  # FC
    'edges.2.weight', 'edges.2.bias',  # channel affine
    'edges.5.convs.0.weight', 'edges.5.convs.1.weight',  # 2 x conv 3x3
    'mixer.0.weight', 'mixer.1.weight', 'mixer.1.bias',
    'mixer.1.running_mean', 'mixer.1.running_var',
    'mixer.1.num_batches_tracked',
]


@pytest.mark.parametrize('scope,registry', [('mmdet', mmdet_models),
                                            ('mmpretrain', mmpretrain_models)])
@pytest.mark.parametrize('type_', ['sase_mm.SASE', 'sase_mm.SASESearch'])
def test_builds_under_downstream_scope(scope, registry, type_):
    with DefaultScope.overwrite_default_scope(scope):
        assert DefaultScope.get_current_instance().scope_name == scope
        block = registry.build(dict(type=type_, in_channels=64))
    assert type(block).__name__ == type_.split('.')[1]
    assert block.in_channels == 64
    y = block(torch.randn(2, 64, 5, 6))
    assert y.shape == (2, 64, 5, 6)


@pytest.mark.parametrize('cls', [SASE, SASESearch])
def test_build_plugin_layer(cls):
    name, layer = build_plugin_layer(dict(type=f'sase_mm.{cls.__name__}'),
                                     postfix='_2', in_channels=32)
    assert isinstance(layer, cls)
    assert name.startswith('sase') and name.endswith('_2')
    assert name == cls._abbr_ + '_2'


def test_custom_imports_in_config(tmp_path):
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text(
        "custom_imports = dict(imports=['sase_mm'], "
        "allow_failed_imports=False)\n"
        "model = dict(type='sase_mm.SASE', in_channels=64)\n")
    cfg = Config.fromfile(str(cfg_file))
    from mmengine.registry import MODELS
    block = MODELS.build(cfg.model)
    assert isinstance(block, SASE)


def _resnet50(plugin_type):
    cfg = dict(type='ResNet', depth=50, num_stages=4,
               out_indices=(0, 1, 2, 3), norm_eval=False,
               plugins=[dict(cfg=dict(type=plugin_type),
                             stages=(True, True, True, True),
                             position='after_conv3')])
    with DefaultScope.overwrite_default_scope('mmdet'):
        return mmdet_models.build(cfg)


def _plugins(model, cls):
    return {n: m for n, m in model.named_modules() if isinstance(m, cls)}


def test_mmdet_resnet50_with_sase():
    model = _resnet50('sase_mm.SASE')
    model.eval()  # mmdet's ResNet.train() returns None: no chaining
    plugins = _plugins(model, SASE)
    assert len(plugins) == 3 + 4 + 6 + 3  # every bottleneck
    assert 'layer1.0.sase' in plugins
    assert plugins['layer4.2.sase'].in_channels == 2048
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 256, 16, 16),
                                              (1, 512, 8, 8),
                                              (1, 1024, 4, 4),
                                              (1, 2048, 2, 2)]
    assert all(torch.isfinite(o).all() for o in outs)
    # Stable, readable keys: the reference layout's names per block.
    keys = [k[len('layer1.0.sase.'):] for k in model.state_dict()
            if k.startswith('layer1.0.sase.')]
    assert keys == SASE_KEYS


def test_sase_block_state_dict_keys():
    keys = list(SASE(256).state_dict())
    assert keys == SASE_KEYS
    sd = SASE(256).state_dict()
    assert sd['edges.0.merge.weight'].shape == (1, 2, 1, 1)
    assert sd['edges.1.reduce.weight'].shape == (16, 256, 1, 1)
    assert sd['edges.1.expand.weight'].shape == (256, 16, 1, 1)
    assert sd['edges.2.weight'].shape == (256, 1, 1)
    assert sd['edges.5.convs.0.weight'].shape == (1, 1, 3, 3)


def test_search_block_state_dict_keys():
    keys = list(SASESearch(64).state_dict())
    assert keys[0] == 'alphas'
    assert 'edges.0.ops.gap_gmp.merge.weight' in keys
    assert 'edges.5.ops.conv_3x3_x2.convs.1.weight' in keys
    assert 'edges.4.ops.l2_norm.weight' in keys
    assert 'mixer.1.running_mean' in keys and 'mixer.1.weight' not in keys


def test_mmdet_resnet50_with_search_plugin_shares_one_alpha():
    """mmcv builds each plug-in alone (an alpha each); one explicit call
    binds the first plug-in's alpha to all of them."""
    model = _resnet50('sase_mm.SASESearch')
    model.train()
    plugins = _plugins(model, SASESearch)
    assert len(plugins) == 16
    assert len({id(p.arch_alphas) for p in plugins.values()}) == 16
    alpha = bind_alphas(model)
    alpha_keys = [k for k in model.state_dict() if 'alphas' in k]
    assert alpha_keys == ['layer1.0.sase_search.alphas']
    assert alpha is plugins['layer1.0.sase_search'].arch_alphas
    assert all(p.arch_alphas is alpha for p in plugins.values())
    model.eval()  # eval-mode BN: a batch of one is fine
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 32))
    assert outs[-1].shape == (1, 2048, 1, 1)
    assert all(torch.isfinite(o).all() for o in outs)


def test_registered_in_sase_mm_scope():
    from sase_mm.registry import MODELS
    assert MODELS.scope == 'sase_mm'
    assert MODELS.get('SASE') is SASE
    assert MODELS.get('SASESearch') is SASESearch
