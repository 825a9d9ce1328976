"""The cost-aware alpha objective, an option beyond SASE (arXiv 2411.08333;
docs/search_options.md): the costs file is validated as a hostile file, the
penalty's gradient is that of ``lambda * sum_e softmax(alpha_e) . cost_e``,
and a large lambda moves every edge's argmax to its cheapest operation, on
alpha alone and through ``DARTSSearch.train_step``."""
import json
import os

import pytest
import torch
from mmengine.optim import OptimWrapper, OptimWrapperDict
from tiny_supernets import build_tiny

from sase_mm.models.sase.space import EDGES
from sase_mm.models.search.cost import (ArchCost, CostFileError,
                                        expected_cost, load_costs)


def _table(seed=0):
    """Costs with a different, unique cheapest column on each edge."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(7, generator=g).double() + 1
                        for _ in EDGES])


def _doc(table):
    return dict(metric='flops', costs={
        e.name: {op: float(v) for op, v in zip(e.op_set.names, row)}
        for e, row in zip(EDGES, table)})


def _write(path, doc):
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_file_reads_back_in_column_order(tmp_path):
    table = _table()
    doc = _doc(table)
    # Keys in another order and in the reference spelling read the same.
    row = doc['costs']['channel_squeeze']
    doc['costs']['channel_squeeze'] = {
        EDGES[0].op_set.ops[op].ref: row[op] for op in reversed(list(row))}
    assert torch.equal(load_costs(_write(tmp_path / 'c.json', doc)), table)


def _bad_docs():
    good = _doc(_table())

    def edit(fn):
        doc = json.loads(json.dumps(good))
        fn(doc['costs'])
        return doc

    def set_cost(value, edge='spatial_map', op='conv_7x7'):
        return edit(lambda c: c[edge].__setitem__(op, value))

    return [
        ('list', [[1] * 7] * 6, 'a "costs" object'),
        ('costs_list', dict(costs=[[1] * 7] * 6), 'a "costs" object'),
        ('missing_edge', edit(lambda c: c.pop('channel_gate')),
         r"missing: \['channel_gate'\]"),
        ('unknown_edge', edit(lambda c: c.__setitem__('E6', {})),
         r"unknown: \['E6'\]"),
        ('row_list', edit(lambda c: c.__setitem__('channel_map', [1] * 7)),
         "'channel_map' must be an object"),
        # a channel-squeeze name on the spatial excitation edge
        ('wrong_set', edit(lambda c: c['spatial_map'].__setitem__('gap', 1)),
         "'spatial_map' .spatial_excitation. has no operation 'gap'"),
        ('missing_op', edit(lambda c: c['spatial_map'].pop('affine')),
         r"lacks the costs of \['affine'\]"),
        ('twice', edit(lambda c: c['channel_squeeze'].__setitem__('GAP', 1)),
         "'gap' is given twice"),
        ('nan', set_cost(float('nan')), 'must be finite'),
        ('inf', set_cost(float('inf')), 'larger than'),
        ('negative', set_cost(-1.0), 'must be >= 0'),
        ('huge', set_cost(1e300), 'larger than'),
        ('huge_int', set_cost(10 ** 400), 'larger than'),
        ('string', set_cost('1'), 'must be a number, got str'),
        ('bool', set_cost(True), 'must be a number, got bool'),
        ('null', set_cost(None), 'must be a number, got NoneType'),
        ('nested', set_cost({'a': [1]}), 'must be a number, got dict'),
        ('deep', '[' * 100000 + ']' * 100000, 'nested too deeply'),
        ('not_json', '{"costs": {', 'not valid JSON'),
        ('many_digits', '{"costs": ' + '9' * 5000 + '}', 'digits|costs'),
        ('large', ' ' * (2 << 20) + '{}', 'larger than 1048576 bytes'),
    ]


@pytest.mark.parametrize('name,doc,match', _bad_docs(),
                         ids=[d[0] for d in _bad_docs()])
def test_crafted_files_get_a_message(name, doc, match, tmp_path):
    path = _write(tmp_path / f'{name}.json', doc)
    with pytest.raises(CostFileError, match=match) as info:
        load_costs(path)
    msg = str(info.value)
    assert path in msg and 'op_costs.py' in msg  # names the file, the form


def test_not_utf8_and_missing(tmp_path):
    path = tmp_path / 'latin.json'
    path.write_bytes(b'{"costs": "\xff\xfe"}')
    with pytest.raises(CostFileError, match=str(path)):
        load_costs(str(path))
    with pytest.raises(FileNotFoundError, match='op_costs.py'):
        load_costs(str(tmp_path / 'none.json'))


@pytest.mark.parametrize('cfg,match', [
    (dict(file='x.json'), 'weight'),
    (dict(file='x.json', weight=1, extra=1), 'arch_cost must be'),
    ('x.json', 'arch_cost must be'),
    (dict(file=3, weight=1), 'must be a path'),
    (dict(file='x.json', weight=1, normalize='yes'), 'True or False'),
])
def test_bad_config(cfg, match):
    with pytest.raises(ValueError, match=match):
        ArchCost.build(cfg)


@pytest.mark.parametrize('weight', [-1.0, float('nan'), float('inf'), True,
                                    '1'])
def test_bad_weight(weight):
    with pytest.raises(ValueError, match='lambda'):
        ArchCost(_table(), weight)


def test_all_zero_costs_are_refused():
    with pytest.raises(ValueError, match='every cost'):
        ArchCost(torch.zeros(6, 7), 1.0)


def test_penalty_and_gradient():
    table = _table()
    cost = ArchCost(table, 0.7)
    assert torch.equal(cost.costs, table / 7)  # normalised by the largest
    alphas = torch.randn(6, 7, requires_grad=True)
    value, grad = cost.penalty(alphas)
    assert alphas.grad is None and not value.requires_grad
    p = alphas.detach().double().softmax(-1)
    c = table / 7
    assert torch.allclose(value.double(), 0.7 * (p * c).sum(), atol=1e-6)
    # d/d alpha of p . c is p * (c - p . c), row by row
    closed = 0.7 * p * (c - (p * c).sum(-1, keepdim=True))
    assert torch.allclose(grad.double(), closed, atol=1e-6)
    assert grad.dtype == alphas.dtype
    raw = ArchCost(table, 1.0, normalize=False)
    assert torch.allclose(raw.penalty(alphas)[0].double(),
                          expected_cost(alphas.detach().double(), table))


def test_large_lambda_on_alpha_picks_the_cheapest():
    cost = ArchCost(_table(), 10.0)
    torch.manual_seed(0)
    alphas = torch.nn.Parameter(torch.randn(6, 7))
    assert alphas.argmax(1).tolist() != cost.cheapest()
    opt = torch.optim.Adam([alphas], lr=0.1)
    for _ in range(60):
        alphas.grad = cost.penalty(alphas)[1]
        opt.step()
    assert alphas.argmax(1).tolist() == cost.cheapest()


def _optim(model, alpha_lr):
    return OptimWrapperDict(
        weights=OptimWrapper(torch.optim.SGD(model.supernet.parameters(),
                                             lr=0.05, momentum=0.9)),
        alphas=OptimWrapper(torch.optim.Adam([model.alphas], lr=alpha_lr,
                                             betas=(0.5, 0.999))))


def test_search_with_large_lambda_picks_the_cheapest(tmp_path, batches):
    path = _write(tmp_path / 'costs.json', _doc(_table()))
    model = build_tiny(order=1, arch_cost=dict(file=path, weight=20.0))
    cheapest = model.arch_cost.cheapest()
    assert model.alphas.argmax(1).tolist() != cheapest
    optim = _optim(model, 0.5)
    for _ in range(8):
        before = model.alphas.detach().clone()
        out = model.train_step(batches, optim)
    assert model.alphas.argmax(1).tolist() == cheapest
    assert set(out) == {'loss', 'loss_search', 'arch_cost'}
    # the logged penalty: lambda * the expected normalised cost at the
    # alpha the step started from
    assert float(out['arch_cost']) == pytest.approx(20.0 * float(
        expected_cost(before.double(), model.arch_cost.costs)), rel=1e-6)


def test_zero_lambda_is_the_paper_step(tmp_path, batches):
    """weight 0 adds an exact zero: the same alpha, bit for bit, as no
    cost term."""
    path = _write(tmp_path / 'costs.json', _doc(_table()))
    alphas = []
    for kwargs in ({}, dict(arch_cost=dict(file=path, weight=0.0))):
        model = build_tiny(order=1, **kwargs)
        out = model.train_step(batches, _optim(model, 0.01))
        alphas.append(model.alphas.detach().clone())
        assert ('arch_cost' in out) == bool(kwargs)
    assert torch.equal(*alphas)
    assert os.path.isfile(path)
