"""What ``import sase_mm`` and its safe loader cost a checkpoint load.

SASE (arXiv 2411.08333) downstream models start from ResNet-50 checkpoints.
``import sase_mm`` must leave ``torch.load`` untouched (it registers nothing
with torch; see docs/security.md), and the project's own loader
(``sase_mm.utils.load_checkpoint``: ``weights_only=True`` with a scoped
allow-list) should cost no more than ``torch.load`` itself. Three candidates
load the same ResNet-50 checkpoint (state_dict and meta, ~100 MB), each in
a fresh process per repetition, interleaved repetition by repetition:

* ``torch``: ``torch.load(weights_only=True)`` in a process without sase_mm;
* ``torch+import``: the same after ``import sase_mm``;
* ``sase_mm``: ``sase_mm.utils.load_checkpoint`` (after ``import sase_mm``).

Only the load is timed (inside each process), not the imports. Printed:
medians and the ratios to ``torch``.

Usage::

    python benchmarks/checkpoint_load.py [--reps 7]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

from interleave import interleaved

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOAD = '''
import sys, time, torch
{setup}
t0 = time.perf_counter()
{load}
print(time.perf_counter() - t0)
'''
CANDIDATES = {
    'torch': ('', 'torch.load(sys.argv[1], weights_only=True)'),
    'torch+import': ('import sase_mm',
                     'torch.load(sys.argv[1], weights_only=True)'),
    'sase_mm': ('import sase_mm\nfrom sase_mm.utils import load_checkpoint',
                'load_checkpoint(sys.argv[1])'),
}


def make_checkpoint(path: str) -> None:
    import torch
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(epoch=100, note='resnet50')), path)


def run(name: str, path: str) -> float:
    setup, load = CANDIDATES[name]
    out = subprocess.run(
        [sys.executable, '-c', LOAD.format(setup=setup, load=load), path],
        capture_output=True, text=True, check=True, cwd=REPO)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--reps', type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'resnet50.pth')
        make_checkpoint(path)
        print(f'checkpoint: ResNet-50, {os.path.getsize(path) / 2**20:.1f} '
              f'MiB; {args.reps} interleaved repetitions, one process each')
        times = interleaved({k: (lambda k=k: run(k, path))
                             for k in CANDIDATES}, args.reps, warmup=1)
    base = statistics.median(times['torch'])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f'  {name:<13} median {med * 1e3:7.1f} ms   '
              f'x torch {med / base:5.2f}   (min {min(ts) * 1e3:.1f} ms)')


if __name__ == '__main__':
    main()
