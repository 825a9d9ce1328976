"""What importing sase_mm costs, against ``import torch``, in one run.

SASE (arXiv 2411.08333): the blocks (``sase_mm.models.sase``) and the
attention zoo are plain PyTorch and
must not pay for the OpenMMLab stack; ``import sase_mm`` sets up the mm
side (registries, the safe checkpoint loader, ``sase_mm::`` configs) and
imports mmdet / mmpretrain only when one of their modules is first needed.
Each candidate runs in a fresh process, interleaved repetition by
repetition; printed are the medians of the wall time of the whole process
and the ratio to ``import torch``.

Usage::

    python benchmarks/import_time.py [--reps 7]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

from interleave import interleaved

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANDIDATES = {
    'import torch': 'import torch',
    'from sase_mm.models.sase import SASE, SASESearch':
    'import torch; from sase_mm.models.sase import SASE, SASESearch',
    'import sase_mm': 'import torch; import sase_mm',
    'import sase_mm + a backbone (mmpretrain)':
    'import torch, sase_mm; from sase_mm.registry import MODELS; '
    'MODELS.get("SASEResNet")',
    'import mmdet.models': 'import torch, mmdet.models',
}


def run(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, '-W', 'ignore', '-c', code], check=True,
                   cwd='/', env=dict(os.environ, PYTHONPATH=REPO))
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--reps', type=int, default=7)
    args = parser.parse_args(argv)
    times = interleaved({k: (lambda c=c: run(c))
                         for k, c in CANDIDATES.items()}, args.reps, warmup=1)
    base = statistics.median(times['import torch'])
    print(f'wall time of a fresh process, median of {args.reps} '
          f'interleaved repetitions')
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f'  {name:<55} {med:6.2f} s   x import torch {med / base:5.2f}')


if __name__ == '__main__':
    main()
