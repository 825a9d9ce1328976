"""benchmarks/gpu_step.py on the CPU: without a GPU it says so and writes
that; ``--smoke`` runs its code paths at tiny shapes (SASE, arXiv
2411.08333: the ResNet-50 step with SE / SASE, the ResNet-20 supernet and
its first- and second-order DARTS steps)."""
import json
import os
import subprocess
import sys

import pytest
import torch

SCRIPT = os.path.join(os.path.dirname(__file__), '..', '..', 'benchmarks',
                      'gpu_step.py')
ON_GPU = pytest.mark.skipif(
    torch.cuda.is_available(),
    reason='a CUDA device is present: the script would benchmark for '
    'minutes')


def _run(*args, timeout=300):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    return subprocess.run([sys.executable, SCRIPT, *args],
                          capture_output=True, text=True, env=env,
                          timeout=timeout)


@ON_GPU
def test_without_cuda_it_says_so_and_exits_0(tmp_path):
    out = tmp_path / 'figures.json'
    run = _run('--repeats', '1', '--json', str(out))
    assert run.returncode == 0, run.stderr
    assert 'no CUDA device' in run.stdout
    report = json.loads(out.read_text())
    assert report['status'] == 'skipped'
    assert 'no CUDA device' in report['reason']
    assert report['runs'] == {}


def test_bad_arguments_are_refused():
    run = _run('--repeats', '0')
    assert run.returncode == 2
    assert '--repeats must be >= 1, got 0' in run.stderr
    run = _run('--precision', 'float8')
    assert run.returncode == 2
    assert 'invalid choice' in run.stderr and 'bfloat16' in run.stderr


def test_smoke_runs_the_r50_and_r20_steps_on_the_cpu(tmp_path):
    """Every candidate builds and steps (float16 autocast: the loss scaler
    and sase_mm's CPU AMP wrapper), the ratios and targets are computed,
    and compile is skipped with its reason."""
    out = tmp_path / 'figures.json'
    run = _run('--smoke', '--precision', 'float16', '--parts', 'r50', 'r20',
               'compile', '--json', str(out))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report['status'] == 'ok' and report['smoke'] is True
    parts = report['runs']['float16']['parts']
    assert report['runs']['float16']['amp'] is True
    r50, r20 = parts['r50'], parts['r20']
    assert r50['status'] == 'ok' and r20['status'] == 'ok'
    assert set(r50['candidates']) == {'plain', 'se', 'sase'}
    assert set(r20['candidates']) == {'plain', 'supernet', 'first',
                                      'second'}
    for part in (r50, r20):
        for fig in part['candidates'].values():
            assert fig['ms'] > 0 and fig['images_per_s'] > 0
            assert fig['peak_mib'] is None  # measured on CUDA only
    assert set(r50['ratios']) == {'sase_vs_se', 'sase_vs_plain',
                                  'se_vs_plain'}
    assert set(r20['ratios']) == {'supernet_vs_plain', 'first_vs_supernet',
                                  'second_vs_supernet'}
    ratio = r50['candidates']['sase']['ms'] / r50['candidates']['se']['ms']
    assert r50['ratios']['sase_vs_se'] == pytest.approx(ratio)
    target = r50['targets']['sase_vs_se']
    assert target['target'] == 1.10
    assert target['met'] == (target['ratio'] <= 1.10)
    assert set(r20['targets']) == {'supernet_vs_plain', 'second_vs_supernet'}
    assert parts['compile']['status'] == 'skipped'
    assert 'minutes on a CPU' in parts['compile']['reason']
    assert 'sase_vs_se' in run.stdout and 'second_vs_supernet' in run.stdout
