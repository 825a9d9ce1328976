"""apis/preflight.py: the one walk over a config for its genotype files,
the two uses of it (inlined by the tools' config loading, checked before a
search builds anything), and the weights mmengine loads from a checkpoint
that the pretrained-weights check compares (SASE, arXiv 2411.08333)."""
import os

import pytest
import torch
from data_utils import payloads
from mmengine.config import Config

from sase_mm.apis.preflight import (check_genotype_files, genotype_files,
                                    weights_to_load)
from sase_mm.apis.tool_args import inline_genotype_files
from sase_mm.models.sase import Genotype
from sase_mm.models.sase.genotype import GenotypeFileError
from sase_mm.utils.safe_checkpoint import UntrustedCheckpointError

OPS = ['gap', 'fc', 'affine', 'l4_pool', 'gap', 'conv_3x3']


def _config(tmp_path):
    """A config naming a genotype in each form, nested in dicts and lists:
    a file that exists, one that does not, a registered name, an inline
    list and an inline JSON string."""
    saved = str(tmp_path / 'saved.json')
    Genotype(OPS).save(saved)
    return Config(dict(
        model=dict(backbone=dict(attn_cfg=dict(type='sase_mm.SASE',
                                               genotype=saved))),
        plugins=[dict(cfg=dict(type='sase_mm.SASE',
                               genotype=str(tmp_path / 'missing.py'))),
                 dict(cfg=dict(type='sase_mm.SASE', genotype='sase_paper')),
                 dict(cfg=dict(type='sase_mm.SASE', genotype=OPS)),
                 dict(cfg=dict(type='sase_mm.SASE',
                               genotype=' ["gap", "fc"]'))])), saved


def test_one_walk_finds_the_files_of_a_config(tmp_path):
    cfg, saved = _config(tmp_path)
    found = genotype_files(cfg)
    assert [(where, parent['genotype']) for where, parent in found] == [
        ('model.backbone.attn_cfg.genotype', saved),
        ('plugins.0.cfg.genotype', str(tmp_path / 'missing.py'))]
    # The dicts themselves: an edit through them is an edit of the config.
    found[0][1]['genotype'] = 'edited'
    assert cfg.model.backbone.attn_cfg.genotype == 'edited'


def test_inline_replaces_the_files_that_exist_only(tmp_path):
    cfg, _ = _config(tmp_path)
    inline_genotype_files(cfg)
    assert list(cfg.model.backbone.attn_cfg.genotype) == OPS
    assert cfg.plugins[0].cfg.genotype == str(tmp_path / 'missing.py')
    assert cfg.plugins[1].cfg.genotype == 'sase_paper'


def test_check_names_the_missing_file_and_its_key(tmp_path):
    """On a Config, as the tools pass it (after inlining)."""
    cfg, _ = _config(tmp_path)
    inline_genotype_files(cfg)
    with pytest.raises(FileNotFoundError) as err:
        check_genotype_files(cfg)
    assert str(err.value).startswith(
        "plugins.0.cfg.genotype: genotype file '" +
        str(tmp_path / 'missing.py'))
    del cfg.plugins[0]
    check_genotype_files(cfg)  # the rest is fine


def test_check_reads_the_file_without_running_it(tmp_path):
    marker = str(tmp_path / 'ran')
    path = payloads.code_genotype_py(str(tmp_path / 'genotype.py'), marker)
    with pytest.raises(GenotypeFileError, match='genotype.py'):
        check_genotype_files(Config(dict(attn=dict(genotype=path))))
    assert not os.path.exists(marker)


def _ckpt(tmp_path, state, name='c.pth', wrap=True):
    path = str(tmp_path / name)
    torch.save(dict(state_dict=state, meta={}) if wrap else state, path)
    return path


def test_weights_to_load_as_mmengine_loads_them(tmp_path):
    w = torch.ones(2)
    # load_checkpoint / load_from: the state dict, DataParallel's module.
    # stripped.
    path = _ckpt(tmp_path, {'module.backbone.conv.weight': w,
                            'module.head.fc.bias': w})
    assert sorted(weights_to_load(path)) == ['backbone.conv.weight',
                                             'head.fc.bias']
    # Pretrained with a prefix: the keys under it, stripped.
    path = _ckpt(tmp_path, {'backbone.conv.weight': w, 'head.fc.bias': w},
                 wrap=False)
    assert list(weights_to_load(path, 'backbone')) == ['conv.weight']
    assert list(weights_to_load(path, 'backbone.')) == ['conv.weight']


def test_weights_to_load_names_what_is_wrong(tmp_path):
    path = _ckpt(tmp_path, {'conv.weight': torch.ones(1),
                            'fc.bias': torch.ones(1)})
    with pytest.raises(ValueError) as err:
        weights_to_load(path, 'backbone', what='CKPT')
    assert "no weights under the prefix 'backbone.' (CKPT with prefix)" in \
        str(err.value) and "['conv.', 'fc.']" in str(err.value)
    listed = str(tmp_path / 'list.pth')
    torch.save([torch.ones(1)], listed)
    with pytest.raises(ValueError, match='holds no state dict but a list'):
        weights_to_load(listed)


def test_weights_to_load_reads_through_the_safe_loader(tmp_path):
    marker = str(tmp_path / 'ran')
    path = payloads.reduce_system_checkpoint(str(tmp_path / 'evil.pth'),
                                             marker)
    for prefix in (None, 'backbone.'):
        with pytest.raises(UntrustedCheckpointError):
            weights_to_load(path, prefix)
    assert not os.path.exists(marker)
