"""The SASE genotype (arXiv 2411.08333, docs/spec.md sections 2 and 4).

Validation with errors that name the valid operations, and round trips
through every form a genotype is read from or written to.
"""
import json

import pytest
import torch

from sase_mm.models.sase import (EDGES, GENOTYPES, OP_SETS,
                                      SASE_PAPER_GENOTYPE, Genotype)

PAPER_PAIRS = [('GAP+GMP', 0), ('2conv_1x1', 1), ('affine', 2), ('p-norm', 3),
               ('GAP', 4), ('2conv_3x3', 5)]


def _random_genotype(gen):
    return Genotype(e.op_set.names[int(torch.randint(7, (1, ), generator=gen))]
                    for e in EDGES)


def _random_genotypes(n=5):
    gen = torch.Generator().manual_seed(1)
    return [_random_genotype(gen) for _ in range(n)]


# ------------------------------------------------------------ the constant
def test_paper_constant():
    # docs/spec.md section 4, in readable names.
    assert tuple(SASE_PAPER_GENOTYPE) == ('gap_gmp', 'fc', 'affine',
                                          'l4_pool', 'gap', 'conv_3x3_x2')
    assert GENOTYPES['sase_paper'] == SASE_PAPER_GENOTYPE
    assert Genotype.parse(None) == SASE_PAPER_GENOTYPE
    assert Genotype.parse('sase_paper') == SASE_PAPER_GENOTYPE
    assert SASE_PAPER_GENOTYPE.to_pairs() == PAPER_PAIRS


# --------------------------------------------------------------- validation
@pytest.mark.parametrize('n', [0, 5, 7])
def test_wrong_edge_count(n):
    ops = (list(SASE_PAPER_GENOTYPE) * 2)[:n]
    with pytest.raises(ValueError, match=f'6 edges.*got {n}'):
        Genotype(ops)


def test_op_from_wrong_set_names_its_set_and_valid_names():
    ops = list(SASE_PAPER_GENOTYPE)
    ops[0] = 'conv_3x3'  # a spatial excitation op on the channel squeeze edge
    with pytest.raises(ValueError) as err:
        Genotype(ops)
    msg = str(err.value)
    assert 'edge 0' in msg and 'channel_squeeze' in msg
    assert 'spatial_excitation' in msg  # where the op does belong
    for name in OP_SETS['channel_squeeze'].names:
        assert repr(name) in msg
    for ref in OP_SETS['channel_squeeze'].ref_names:
        assert repr(ref) in msg


@pytest.mark.parametrize('edge', range(6))
def test_unknown_name_lists_valid_names(edge):
    ops = list(SASE_PAPER_GENOTYPE)
    ops[edge] = 'no_such_op'
    with pytest.raises(ValueError) as err:
        Genotype(ops)
    msg = str(err.value)
    assert 'no_such_op' in msg and f'edge {edge}' in msg
    for name in EDGES[edge].op_set.names:
        assert repr(name) in msg


@pytest.mark.parametrize('bad', [
    [('GAP', 0)] * 6,  # edge 0 twice
    PAPER_PAIRS[:5],  # edge 5 missing
    PAPER_PAIRS[:5] + [('2conv_3x3', 6)],  # index out of range
])
def test_bad_pairs(bad):
    with pytest.raises(ValueError, match='edge'):
        Genotype.parse(bad)


def test_bad_dict_keys():
    d = SASE_PAPER_GENOTYPE.to_dict()
    d['bogus'] = d.pop('channel_squeeze')
    with pytest.raises(ValueError, match='bogus.*channel_squeeze'):
        Genotype.parse(d)


def test_non_string_op():
    with pytest.raises(TypeError, match='edge 0'):
        Genotype([0, 'fc', 'affine', 'l4_pool', 'gap', 'conv_3x3_x2'])


def test_unreadable_string():
    with pytest.raises(ValueError, match='sase_paper'):
        Genotype.parse('not_a_genotype_or_file')


# -------------------------------------------------------------- read forms
def test_reference_pairs_and_spellings():
    g = Genotype.parse(PAPER_PAIRS)
    assert g == SASE_PAPER_GENOTYPE
    # Pairs in any order.
    assert Genotype.parse(list(reversed(PAPER_PAIRS))) == g
    # Lists of reference spellings, and a mix of both spellings.
    assert Genotype.parse([n for n, _ in PAPER_PAIRS]) == g
    mixed = ['GAP+GMP', 'fc', 'affine', 'p-norm', 'gap', '2conv_3x3']
    assert Genotype.parse(mixed) == g
    # Pairs as JSON lists (what JSON gives back).
    assert Genotype.parse(json.loads(json.dumps(PAPER_PAIRS))) == g


@pytest.mark.parametrize('set_name', list(OP_SETS))
def test_every_reference_spelling_is_accepted(set_name):
    op_set = OP_SETS[set_name]
    for name, ref in zip(op_set.names, op_set.ref_names):
        assert op_set.canonical(ref) == name
        assert op_set.canonical(name) == name


def test_dict_form():
    d = SASE_PAPER_GENOTYPE.to_dict()
    assert list(d) == [e.name for e in EDGES]
    assert Genotype.parse(d) == SASE_PAPER_GENOTYPE
    assert Genotype.parse({'genotype': d}) == SASE_PAPER_GENOTYPE


# ------------------------------------------------------------- round trips
@pytest.mark.parametrize('g', [SASE_PAPER_GENOTYPE] + _random_genotypes(),
                         ids=str)
def test_json_round_trip(g, tmp_path):
    assert Genotype.parse(g.to_json()) == g
    assert Genotype.parse(json.dumps(g.to_pairs())) == g
    path = tmp_path / 'g.json'
    g.save(str(path))
    assert Genotype.load(str(path)) == g
    assert Genotype.parse(str(path)) == g


@pytest.mark.parametrize('g', [SASE_PAPER_GENOTYPE] + _random_genotypes(),
                         ids=str)
def test_mmengine_config_round_trip(g, tmp_path):
    from mmengine.config import Config
    path = tmp_path / 'genotype_cfg.py'
    g.save(str(path))
    assert Genotype.load(str(path)) == g
    cfg = Config.fromfile(str(path))
    assert Genotype.parse(cfg.genotype) == g
    # The written file is also a config another config can inherit from.
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = ['./{path.name}']\nmodel = dict(x=1)\n")
    assert Genotype.parse(Config.fromfile(str(child)).genotype) == g
    assert not list(tmp_path.glob('*.tmp'))  # atomic write left nothing


def test_config_without_genotype(tmp_path):
    path = tmp_path / 'empty.py'
    path.write_text('x = 1\n')
    with pytest.raises(ValueError, match='genotype'):
        Genotype.load(str(path))


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        Genotype.load(str(tmp_path / 'missing.json'))


# --------------------------------------------------------------- from alphas
def test_from_alphas_is_rowwise_argmax():
    alphas = torch.randn(6, 7)
    g = Genotype.from_alphas(alphas)
    for e, op, row in zip(EDGES, g, alphas):
        assert e.op_set.names[int(row.argmax())] == op
    assert g.indices() == alphas.argmax(1).tolist()


def test_from_alphas_paper():
    alphas = torch.zeros(6, 7)
    for i, j in enumerate(SASE_PAPER_GENOTYPE.indices()):
        alphas[i, j] = 1.0
    assert Genotype.from_alphas(alphas) == SASE_PAPER_GENOTYPE
    assert SASE_PAPER_GENOTYPE.indices() == [3, 1, 6, 2, 0, 5]


@pytest.mark.parametrize('shape', [(6, 6), (5, 7), (42, )])
def test_from_alphas_bad_shape(shape):
    with pytest.raises(ValueError, match=r'\(6, 7\)'):
        Genotype.from_alphas(torch.zeros(shape))
