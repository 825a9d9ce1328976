"""tools/analysis/op_costs.py: the per-operation costs of the SASE search
space (arXiv 2411.08333) at the block's shapes, for the cost-aware search
(docs/search_options.md). The FLOP mode is deterministic, counts what it
says, sums over stages, and writes the file sase_mm's cost loader reads."""
import json
import math

import pytest
import torch
from data_utils.tool_runs import load_tool

from sase_mm.models.sase.space import EDGES
from sase_mm.models.search.cost import ArchCost, load_costs

tool = load_tool('analysis/op_costs')


def _run(tmp_path, name, *argv):
    out = str(tmp_path / name)
    tool.main(list(argv) + ['--out', out])
    return out, json.load(open(out))


def test_flops_are_deterministic_and_load(tmp_path):
    a, doc = _run(tmp_path, 'a.json', '--channels', '8', '16', '--size', '8',
                  '4')
    b, again = _run(tmp_path, 'b.json', '--channels', '8', '16', '--size',
                    '8', '4')
    assert doc == again
    assert doc['metric'] == 'flops' and doc['channels'] == [8, 16]
    table = load_costs(a)  # the file cost.py reads
    assert torch.equal(table, load_costs(b))
    assert ArchCost(table, 1.0).costs.max() == 1
    # Edges of one set and shape share a row: E1 / E2, E3 / E4.
    assert torch.equal(table[1], table[2]) and torch.equal(table[3],
                                                           table[4])
    # A k x k conv + sigmoid on (1, 1, H, W): k^2 + 1 per position.
    hw = 8 * 8 + 4 * 4
    spatial = doc['costs']['spatial_map']
    for k in (3, 5, 7):
        assert spatial[f'conv_{k}x{k}'] == (k * k + 1) * hw
    # Every squeeze touches its input: none is free.
    assert all(v > 0 for v in doc['costs']['channel_squeeze'].values())


def test_stages_add_up(tmp_path):
    _, both = _run(tmp_path, 'both.json', '--channels', '8', '16',
                   '--size', '8', '4')
    _, one = _run(tmp_path, 'one.json', '--channels', '8', '--size', '8')
    _, two = _run(tmp_path, 'two.json', '--channels', '16', '--size', '4')
    for e in EDGES:
        for op in e.op_set.names:
            assert both['costs'][e.name][op] == \
                one['costs'][e.name][op] + two['costs'][e.name][op]


def test_latency_loads(tmp_path):
    path, doc = _run(tmp_path, 'lat.json', '--metric', 'latency',
                     '--channels', '8', '--size', '4', '--reps', '2',
                     '--warmup', '0')
    values = [v for row in doc['costs'].values() for v in row.values()]
    assert all(math.isfinite(v) and 0 < v < 10 for v in values)
    assert doc['unit'].startswith('seconds')
    assert load_costs(path).shape == (6, 7)


@pytest.mark.parametrize('argv,match', [
    (['--channels', '8', '16', '--size', '8', '4', '2'], 'one size'),
    (['--channels', '0', '--size', '8'], '>= 1'),
    (['--metric', 'latency', '--reps', '0'], 'reps'),
    (['--batch', '0'], '--batch'),
])
def test_bad_arguments(argv, match, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        tool.main(argv + ['--out', str(tmp_path / 'x.json')])
    assert info.value.code == 1 and match in capsys.readouterr().err
    assert not (tmp_path / 'x.json').exists()
