"""Genotype files (SASE, arXiv 2411.08333) are data: JSON, or a .py file
whose only statement is ``genotype = <literal>``, parsed and never executed;
every other content is refused with the accepted forms."""
import json
import os

import pytest
from data_utils import payloads

from sase_mm.models.sase import SASE, SASE_PAPER_GENOTYPE, Genotype

PAPER = list(SASE_PAPER_GENOTYPE)


@pytest.fixture
def code_py(tmp_path):
    marker = str(tmp_path / 'ran')
    return payloads.code_genotype_py(str(tmp_path / 'genotype.py'),
                                     marker), marker


def test_code_genotype_is_real(code_py):
    """Control: mmengine executes the same file as a config."""
    from mmengine.config import Config
    path, marker = code_py
    Config.fromfile(path)
    assert os.path.exists(marker)


@pytest.mark.parametrize('how', ['load', 'parse', 'SASE', 'attn_cfg',
                                 'plugin'])
def test_code_genotype_is_never_executed(code_py, how):
    path, marker = code_py
    with pytest.raises(ValueError) as info:
        if how == 'load':
            Genotype.load(path)
        elif how == 'parse':
            Genotype.parse(path)
        elif how == 'SASE':
            SASE(16, genotype=path)
        elif how == 'attn_cfg':
            from sase_mm.registry import MODELS
            MODELS.build(dict(type='sase_mm.SASEResNet', depth=18,
                              attn_cfg=dict(type='sase_mm.SASE',
                                            genotype=path)))
        else:
            from mmcv.cnn import build_plugin_layer
            build_plugin_layer(dict(type='sase_mm.SASE', genotype=path),
                               in_channels=16)
    assert not os.path.exists(marker)
    msg = str(info.value)
    assert path in msg and 'exactly one statement' in msg
    assert 'Accepted:' in msg


def test_written_files_read_back(tmp_path):
    g = Genotype(['gap', 'fc', 'affine', 'l4_pool', 'gap', 'conv_3x3'])
    for name in ('g.json', 'g.py'):
        g.save(str(tmp_path / name))
        assert Genotype.load(str(tmp_path / name)) == g
    doc = tmp_path / 'doc.py'
    doc.write_text(f'"""searched on digits"""\n# a comment\ngenotype = '
                   f'{list(g)!r}  # trailing\n')
    assert Genotype.load(str(doc)) == g


def test_inherited_base_fragment_stays_a_config(tmp_path):
    from mmengine.config import Config
    g = Genotype(['gap', 'fc', 'affine', 'l4_pool', 'gap', 'conv_3x3'])
    g.save(str(tmp_path / 'genotype.py'))
    child = tmp_path / 'child.py'
    child.write_text("_base_ = ['./genotype.py']\n"
                     "attn = dict(type='sase_mm.SASE', "
                     "genotype={{_base_.genotype}})\n")
    cfg = Config.fromfile(str(child))
    assert SASE(16, genotype=cfg.attn.genotype).genotype == g


@pytest.mark.parametrize('name,text,match', [
    ('null.json', 'null', 'null'),
    ('nested_null.json', '{"genotype": null}', 'null'),
    ('none.py', 'genotype = None', 'null'),
    ('bool.json', json.dumps([[op, True] for op in PAPER]), 'pairs'),
    ('bool.py', 'genotype = [("gap_gmp", False), ("fc", True)]', 'pairs'),
    ('bad.json', '{"genotype": [', 'not valid JSON'),
    ('deep.json', '[' * 100000 + ']' * 100000, 'nested too deeply'),
    ('deep.py', 'genotype = ' + '[' * 100000 + ']' * 100000,
     'nested too deeply|too many nested|not valid Python'),
    ('call.py', "genotype = list(('gap',) * 6)", 'literal'),
    ('two.py', f'genotype = {PAPER!r}\nx = 1', 'exactly one statement'),
    ('other.py', 'g = 1', 'exactly one statement'),
    ('syntax.py', 'genotype = [', 'not valid Python'),
    ('genotype.yaml', 'genotype: []', 'must end in .json or .py'),
])
def test_bad_files_get_a_message(name, text, match, tmp_path):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        Genotype.load(str(path))
    assert str(path) in str(info.value) and 'Accepted:' in str(info.value)


def test_strings_and_arguments(tmp_path):
    assert Genotype.parse(None) == SASE_PAPER_GENOTYPE  # the argument default
    with pytest.raises(ValueError, match='null'):
        Genotype.parse('{"genotype": null}')
    with pytest.raises(ValueError, match='not valid JSON'):
        Genotype.parse('[1, 2')
    with pytest.raises(ValueError, match='nested too deeply'):
        Genotype.parse('[' * 100000 + ']' * 100000)
    with pytest.raises(ValueError, match='pairs'):
        Genotype.from_pairs([(op, i == 0) for i, op in enumerate(PAPER)])


def test_tools_end_on_a_bad_genotype_file_with_its_message(code_py, capsys):
    """A tool (``tool_args.run_main``) reading a refused genotype file exits
    1 with the message naming the file, no traceback, and runs nothing."""
    from sase_mm.models.sase.genotype import GenotypeFileError
    from sase_mm.apis.tool_args import run_main
    path, marker = code_py
    with pytest.raises(GenotypeFileError):
        Genotype.load(path)
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda argv: Genotype.load(path))
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith('error: cannot read a SASE genotype from') and \
        path in err and 'Traceback' not in err
    assert not os.path.exists(marker)
