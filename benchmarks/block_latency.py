"""Forward + backward latency of the fixed SASE block against an SE block.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333); SE: Squeeze-and-Excitation Networks (Hu et al., CVPR
2018). The paper's searched block (docs/spec.md section 4) is timed against an
SE block with reduction 16 (GAP, FC, ReLU, FC, sigmoid, rescale) at the four
ResNet-50 stage shapes (batch 8), on 2 CPU threads. The two candidates are
interleaved repetition by repetition and the medians compared, so the
printed ratios are measured in one run under the same machine load.

Target: SASE at most 3x SE at every shape. SASE runs as it
trains by default: the fused node of ``models/sase/fast/fused/`` (with the
compiled CPU kernels when they are built); the generic autograd graph
(``SASE(C, fused=False)``, the same values) is timed beside it for
comparison.

Usage::

    python benchmarks/block_latency.py [--reps 15] [--batch 8] [--threads 2]
"""
import argparse
import functools
import statistics
import time

import torch
import torch.nn as nn

from interleave import interleaved
from sase_mm.models.sase import SASE
from sase_mm.models.attention_zoo import SE

# ResNet-50 stage outputs (C, H, W) at 224x224 input.
SHAPES = ((256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7))
TARGET = 3.0


def se_block(channels: int) -> nn.Module:
    """The SE block of the attention zoo (SENet, reduction 16)."""
    return SE(in_channels=channels)


CLOCKS = {
    # Wall time: what a user waits for.
    'wall': time.perf_counter,
    # CPU time of this process: robust to other jobs on a shared machine
    # (time spent preempted is not counted), but counts spin-waiting
    # threads, so use it with --threads 1.
    'cpu': time.process_time,
}


def step(block, x, grad, clock=time.perf_counter):
    """One forward + backward; returns seconds."""
    t0 = clock()
    out = block(x)
    out.backward(grad)
    t = clock() - t0
    x.grad = None
    return t


def peak_extra_memory(block, x, grad):
    """Bytes saved for backward by one forward (autograd saved tensors)."""
    total = 0
    seen = set()

    def pack(t):
        nonlocal total
        key = (t.untyped_storage().data_ptr(), t.dtype)
        if key not in seen and t.data_ptr() != x.data_ptr():
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = block(x)
    out.backward(grad)
    x.grad = None
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--reps', type=int, default=15)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--shapes', type=str, default=None,
                        help='subset, e.g. "256x56x56,2048x7x7"')
    parser.add_argument('--clock', choices=sorted(CLOCKS), default='wall',
                        help='wall time (default) or process CPU time')
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shapes = SHAPES if args.shapes is None else [
        tuple(int(v) for v in s.split('x')) for s in args.shapes.split(',')]

    print(f'SASE (paper genotype) vs SE (r=16), forward+backward, batch '
          f'{args.batch}, {torch.get_num_threads()} threads, median of '
          f'{args.reps} interleaved reps, {args.clock} clock')
    header = (f'{"shape":>14} | {"SE ms":>8} | {"SASE ms":>8} | '
              f'{"ratio":>6} | {"generic ms":>10} | {"ratio":>6} | '
              f'{"SE saved MB":>11} | {"SASE saved MB":>13}')
    from sase_mm.models.sase.fast.kernels import fused_kernels
    print('SE implementation: sase_mm.SE; SASE: fused node, '
          + ('compiled CPU kernels' if fused_kernels() is not None else
             'PyTorch operators (kernels not built)')
          + '; generic: SASE(fused=False)')
    print(header)
    print('-' * len(header))
    worst = 0.0
    for c, h, w in shapes:
        x = torch.randn(args.batch, c, h, w, requires_grad=True)
        grad = torch.randn(args.batch, c, h, w)
        blocks = {'se': se_block(c), 'sase': SASE(c),
                  'generic': SASE(c, fused=False)}
        mem = {k: peak_extra_memory(b, x, grad) / 2**20
               for k, b in blocks.items()}
        times = interleaved({k: functools.partial(step, b, x, grad, clock)
                             for k, b in blocks.items()}, args.reps,
                            args.warmup)
        se = statistics.median(times['se']) * 1e3
        sase = statistics.median(times['sase']) * 1e3
        generic = statistics.median(times['generic']) * 1e3
        ratio = sase / se
        worst = max(worst, ratio)
        print(f'{f"{c}x{h}x{w}":>14} | {se:8.2f} | {sase:8.2f} | '
              f'{ratio:5.2f}x | {generic:10.2f} | {generic / se:5.2f}x | '
              f'{mem["se"]:11.1f} | {mem["sase"]:13.1f}')
    verdict = 'meets' if worst <= TARGET else 'MISSES'
    print(f'worst ratio {worst:.2f}x: {verdict} the target of <= {TARGET}x')


if __name__ == '__main__':
    main()
