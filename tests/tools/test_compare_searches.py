"""tools/analysis/compare_searches.py: several SASE searches (arXiv
2411.08333) compared from the files GenotypeHook writes: per-edge agreement,
each edge's entropy over the epochs and one plot, written atomically; every
file read is hostile and a bad one stops the tool with a message naming
it."""
import json
import math
import os
import os.path as osp

import pytest
from data_utils import payloads
from data_utils.tool_runs import load_tool

from sase_mm.engine.genotype_hook import FILES
from sase_mm.models.sase import EDGES, Genotype

tool = load_tool('analysis/compare_searches')
PAPER = ['gap_gmp', 'fc', 'affine', 'l4_pool', 'gap', 'conv_3x3_x2']
UNIFORM = [1 / 7] * 7


def _peaked(j, p=0.7):
    row = [(1 - p) / 6] * 7
    row[j] = p
    return row


def _history(tables, epochs=None):
    return dict(edges=[e.name for e in EDGES],
                ops=[list(e.op_set.names) for e in EDGES],
                epochs=epochs or list(range(1, len(tables) + 1)),
                softmax_alphas=tables)


def _search(root, name, genotype, tables, history=None):
    """A work dir with GenotypeHook's genotype.json and history."""
    d = osp.join(str(root), name)
    os.makedirs(d)
    Genotype(genotype).save(osp.join(d, FILES['json']))
    with open(osp.join(d, FILES['history_json']), 'w') as f:
        f.write(history if isinstance(history, str) else json.dumps(
            history or _history(tables)))
    return d


def _final(genotype):
    return [_peaked(e.op_set.index(op)) for e, op in zip(EDGES, genotype)]


def test_agreement_entropy_and_plot(tmp_path):
    other = ['gap'] + PAPER[1:]
    dirs = [_search(tmp_path, f'seed{i}', g, [[UNIFORM] * 6, _final(g)])
            for i, g in enumerate((PAPER, PAPER, other))]
    out = tmp_path / 'out'
    result = tool.main(dirs + ['--out-dir', str(out)])
    assert json.load(open(out / 'compare_searches.json')) == json.loads(
        json.dumps(result))
    with open(out / 'compare_searches.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert not [p for p in os.listdir(out) if p.endswith('.tmp')]

    assert [s['genotype'] for s in result['searches']] == [PAPER, PAPER,
                                                           other]
    assert result['identical_genotypes'] is False
    e0, e1 = result['edges'][0], result['edges'][1]
    assert e0['counts'] == {'gap_gmp': 2, 'gap': 1}
    assert e0['mode'] == 'gap_gmp' and e0['agreement'] == pytest.approx(2 / 3)
    assert e0['pairwise_agreement'] == pytest.approx(1 / 3)  # 1 of 3 pairs
    assert e1['agreement'] == 1 and e1['pairwise_agreement'] == 1
    peaked = -(0.7 * math.log(0.7) + 0.3 * math.log(0.05))
    for h in e1['entropy']:
        assert h == pytest.approx([math.log(7), peaked])
    assert result['max_entropy'] == pytest.approx(math.log(7))


def test_one_search_and_the_py_genotype(tmp_path):
    d = _search(tmp_path, 's', PAPER, [_final(PAPER)])
    os.remove(osp.join(d, FILES['json']))
    Genotype(PAPER).save(osp.join(d, FILES['config']))  # genotype.py
    result = tool.compare([d])
    assert result['searches'][0]['genotype'] == PAPER
    assert result['identical_genotypes'] is True
    assert result['edges'][0]['pairwise_agreement'] is None


def _bad_cases():
    good = _history([_final(PAPER)])

    def edit(**kw):
        return json.dumps(dict(good, **kw))

    table = _final(PAPER)
    return [
        ('not_json', '{"epochs": [', 'not valid JSON'),
        ('deep', '[' * 100000 + ']' * 100000, 'nested too deeply'),
        ('list', '[1, 2]', 'a JSON object'),
        ('other_space', edit(edges=['a'] * 6), 'search space'),
        ('other_ops', edit(ops=[['x'] * 7] * 6), 'search space'),
        ('epochs_bool', edit(epochs=[True]), 'increasing list'),
        ('epochs_back', edit(epochs=[2, 1], softmax_alphas=[table] * 2),
         'increasing list'),
        ('short', edit(epochs=[1, 2]), 'one \\(6, 7\\) table per epoch'),
        ('shape', edit(softmax_alphas=[[[1.0]] * 6]), 'not a \\(6, 7\\)'),
        ('nan', edit(softmax_alphas=[[[float('nan')] * 7] + table[1:]]),
         'finite numbers in \\[0, 1\\]'),
        ('string', edit(softmax_alphas=[[['1'] * 7] + table[1:]]),
         'finite numbers'),
        ('above_one', edit(softmax_alphas=[[[2.0] + [0.0] * 6] + table[1:]]),
         'finite numbers'),
        ('sum', edit(softmax_alphas=[[[0.5] * 7] + table[1:]]),
         'sum to 3.5'),
    ]


@pytest.mark.parametrize('name,text,match', _bad_cases(),
                         ids=[c[0] for c in _bad_cases()])
def test_crafted_history_is_refused(name, text, match, tmp_path, capsys):
    good = _search(tmp_path, 'good', PAPER, [_final(PAPER)])
    bad = _search(tmp_path, 'bad', PAPER, None, history=text)
    path = osp.join(bad, FILES['history_json'])
    with pytest.raises(tool.SearchFileError, match=match) as info:
        tool.compare([good, bad])
    assert path in str(info.value)
    with pytest.raises(SystemExit) as ex:
        tool.main([good, bad, '--out-dir', str(tmp_path / 'out')])
    err = capsys.readouterr().err
    assert ex.value.code == 1 and err.startswith('error: ') and path in err
    assert not (tmp_path / 'out' / 'compare_searches.json').exists()


def test_missing_files_and_code_genotype(tmp_path):
    d = _search(tmp_path, 'a', PAPER, [_final(PAPER)])
    with pytest.raises(tool.SearchFileError, match='not a directory'):
        tool.compare([d, str(tmp_path / 'nowhere')])
    os.remove(osp.join(d, FILES['history_json']))
    with pytest.raises(tool.SearchFileError, match='no alphas_history.json'):
        tool.compare([d])
    e = _search(tmp_path, 'e', PAPER, [_final(PAPER)])
    os.remove(osp.join(e, FILES['json']))
    with pytest.raises(tool.SearchFileError, match='no genotype.json or '
                       'genotype.py'):
        tool.compare([e])
    # A genotype.py that is code is refused, never run.
    marker = str(tmp_path / 'ran')
    code = payloads.code_genotype_py(osp.join(e, FILES['config']), marker)
    with pytest.raises(tool.SearchFileError, match='it is not executed') as \
            info:
        tool.compare([e])
    assert code in str(info.value) and not osp.exists(marker)
