"""benchmarks/gpu_step.py without a GPU says so and exits 0 (issue 10)."""
import os
import subprocess
import sys

import pytest
import torch

SCRIPT = os.path.join(os.path.dirname(__file__), '..', '..', 'benchmarks',
                      'gpu_step.py')


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='a CUDA device is present: the script would '
                    'benchmark for minutes')
def test_without_cuda_it_says_so_and_exits_0():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    run = subprocess.run([sys.executable, SCRIPT, '--repeats', '1'],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert 'no CUDA device' in run.stdout
