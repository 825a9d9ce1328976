"""tools/analysis/attention_params.py: parameters added to ResNet-50.

Expected values come from the spec (plain ResNet-50 25,557,032; + SASE
28,102,568, the paper's 28.10 M) and from each module's parameter formula
evaluated over ResNet-50's block widths, computed here independently.
"""
import importlib.util
import math
from pathlib import Path

import pytest

TOOL = Path(__file__).parents[3] / 'tools' / 'analysis' / 'attention_params.py'
# ResNet-50: (blocks, output width) of the four stages.
R50_WIDTHS = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('attention_params', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def rows(tool):
    table = tool.param_table(('SE', 'ECA', 'GSoP', 'SSA', 'SASE'), depth=50,
                             route='torchvision')
    return {r['type']: r for r in table}


def eca_k(c):
    t = int(abs((math.log2(c) + 1) / 2))
    return t if t % 2 else t + 1


def test_plain_and_sase_match_the_spec(rows):
    assert rows['plain']['params'] == 25_557_032
    assert rows['SASE']['params'] == 28_102_568
    assert rows['SASE']['paper_m'] == 28.10


@pytest.mark.parametrize('name,per_block', [
    ('SE', lambda c: 2 * c * (c // 16) + c // 16 + c),
    ('ECA', eca_k),
    ('SSA', lambda c: 2),
    ('GSoP', lambda c: (128 * c + 128) + 4 * 128 + (4 * 128 * 128 + 4 * 128)
     + (4 * 128 * c + c)),
])
def test_added_equals_the_per_block_formula(rows, name, per_block):
    expected = sum(per_block(c) for c in R50_WIDTHS)
    assert rows[name]['added'] == expected
    assert rows[name]['params'] == rows['plain']['params'] + expected


def test_table_formats_every_row(tool, rows):
    text = tool.format_table(list(rows.values()), markdown=True)
    lines = text.splitlines()
    assert len(lines) == 2 + len(rows)
    assert '| SASE | 28,102,568 | 2,545,536 | 28.10 | 28.10 |' in lines


def test_bad_route_is_a_clear_error(tool):
    with pytest.raises(ValueError, match='route'):
        tool.param_table(('SE', ), route='timm')
