"""tools/sample_genotypes.py: the "SASE (random)" baseline of SASE (arXiv
2411.08333) draws distinct genotypes, each edge uniform over its declared
operations, deterministic in the seed, written as genotype files that the
loader reads (never executing them) and configs take by path."""
import os.path as osp
import subprocess
import sys

import pytest
from data_utils.tool_runs import REPO, load_tool

from sase_mm.apis.tool_args import inline_genotype_files
from sase_mm.models.sase import SASE, Genotype
from sase_mm.models.sase.random_genotypes import sample_genotypes

tool = load_tool('sample_genotypes')


def test_deterministic_distinct_and_loadable(tmp_path):
    a = tool.main(['--num', '4', '--seed', '3', '--out-dir',
                   str(tmp_path / 'a')])
    b = tool.main(['--num', '4', '--seed', '3', '--out-dir',
                   str(tmp_path / 'b')])
    c = tool.main(['--num', '4', '--seed', '4', '--out-dir',
                   str(tmp_path / 'c')])
    assert [open(p).read() for p in a] == [open(p).read() for p in b]
    ga, gc = ([Genotype.load(p) for p in x] for x in (a, c))
    assert len(set(ga)) == 4 and ga != gc
    assert [osp.basename(p) for p in a] == [f'random_s3_00{i}.py'
                                            for i in range(4)]
    assert sample_genotypes(2, 3) == ga[:2]  # the sampler's draws
    # Drops into a training config by path, and builds the fixed block.
    cfg = dict(model=dict(backbone=dict(attn_cfg=dict(
        type='sase_mm.SASE', genotype=a[1]))))
    inline_genotype_files(cfg)
    assert cfg['model']['backbone']['attn_cfg']['genotype'] == list(ga[1])
    assert SASE(16, genotype=a[1]).genotype == ga[1]
    (js, ) = tool.main(['--num', '1', '--seed', '3', '--format', 'json',
                        '--out-dir', str(tmp_path / 'j')])
    assert Genotype.load(js) == ga[0]


@pytest.mark.parametrize('num', ['0', '117650', '-2'])
def test_bad_num(num, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        tool.main(['--num', num, '--out-dir', str(tmp_path)])
    assert info.value.code == 1
    assert '--num must be an int in [1, 117649]' in capsys.readouterr().err


def test_command_line(tmp_path):
    out = tmp_path / 'cli'
    res = subprocess.run([sys.executable, osp.join(REPO, 'tools',
                                                   'sample_genotypes.py'),
                          '--num', '2', '--seed', '1', '--out-dir', str(out)],
                         capture_output=True, text=True, cwd=str(tmp_path),
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    files = sorted(out.iterdir())
    assert len(files) == 2 and all(str(f) in res.stdout for f in files)
    assert [Genotype.load(str(f)) for f in files] == \
        sample_genotypes(2, 1)
