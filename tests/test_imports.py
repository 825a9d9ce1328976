"""What importing sase_mm costs and needs (SASE, arXiv 2411.08333): the
blocks and the zoo import with torch and numpy alone, and never import mmdet
or mmpretrain; ``import sase_mm`` registers the mm side lazily."""
import json
import subprocess
import sys
import textwrap

import pytest

# Makes ``import mmengine`` (and everything below it) fail, as on a machine
# with torch and numpy only.
WITHOUT_MM = '''
import sys
class _NoMM:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mmengine', 'mmcv', 'mmdet', 'mmpretrain'):
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
sys.meta_path.insert(0, _NoMM())
'''


def _run(code: str) -> dict:
    res = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('stmt', [
    'from sase_mm.models.sase import SASE, SASESearch, Genotype',
    'from sase_mm.models.attention_zoo import SE, ECA, CBAM',
])
def test_blocks_import_without_mmdet_or_mmpretrain(stmt):
    got = _run(f'''
        import json, sys, torch
        {stmt}
        print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}}
                                & {{'mmdet', 'mmpretrain', 'mmcv'}})))
    ''')
    assert got == []


def test_blocks_work_with_torch_and_numpy_only():
    got = _run(WITHOUT_MM + '''
import json, torch
import sase_mm
from sase_mm.models.sase import SASE, SASESearch
from sase_mm.models.attention_zoo import SE
x = torch.randn(2, 16, 6, 6, requires_grad=True)
y = SASE(16)(x) + SASESearch(16, spatial_size=6)(x) + SE(16)(x)
y.sum().backward()
print(json.dumps([sase_mm.HAS_MMENGINE, list(y.shape),
                  bool(torch.isfinite(x.grad).all())]))
''')
    assert got == [False, [2, 16, 6, 6], True]


def test_import_sase_mm_registers_lazily():
    got = _run('''
        import json, sys
        import sase_mm
        before = sorted({m.split('.')[0] for m in sys.modules}
                        & {'mmdet', 'mmpretrain'})
        from mmengine.registry import MODELS
        cls = MODELS.get('sase_mm.SASEResNet')
        print(json.dumps([before, cls.__name__]))
    ''')
    assert got == [[], 'SASEResNet']
