"""One training step of ResNet-50: plain, + SE, + SASE, as ratios.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333); SE: Squeeze-and-Excitation Networks (Hu et al., CVPR
2018). A training step is forward + loss + backward of
``SASEResNet(depth=50)`` with a 2048 -> 1000 classifier, batch 8 x 3 x 224 x
224, on 2 CPU threads. The three models are timed in one run, repetition by
repetition in alternating order, and the medians compared, so the ratios
share the machine's load.

Targets: SASE-ResNet-50 at most 1.20x the plain ResNet-50 and at
most 1.10x SE-ResNet-50 (the reference implementation: 1.43x and 1.31x).

Usage::

    python benchmarks/backbone_step.py [--reps 7] [--batch 8] [--size 224]
        [--threads 2] [--profile]

Besides wall-clock medians (the target's measure) the table gives the
process's CPU time per step. On a machine shared with other jobs the wall
time swings with their load (the load average is printed); with
``--threads 1`` the CPU time does not (no idle worker spins), so its ratios
are the steadier estimate of the extra work there.

The ratios of the fastest repetitions are printed too: on a machine whose
speed drifts (other tenants' memory traffic slows the memory-bound
attention blocks more than the convolutions) they show the undisturbed
cost; the targets are checked on the medians.

``--profile`` adds where SASE's extra time goes: the torch profiler's top
operators of one SASE step, and each stage's attention blocks timed alone
(forward + backward at that stage's shape).
"""
import argparse
import functools
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import sase_mm  # noqa: F401
from interleave import interleaved, timed
from sase_mm.models.backbones import SASEResNet

TARGET_PLAIN, TARGET_SE = 1.20, 1.10


def se_cfg() -> dict:
    """The SE block of the attention zoo (SENet, reduction 16)."""
    return dict(type='sase_mm.SE')


class Net(nn.Module):
    """Backbone + global average pooling + a 2048 x 1000 fc."""

    def __init__(self, attn_cfg):
        super().__init__()
        # torch's default init: mmpretrain's init_weights would zero every
        # block's last BN (zero_init_residual), an untypical input for timing.
        self.backbone = SASEResNet(50, attn_cfg=attn_cfg)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        return self.fc(self.backbone(x)[-1].mean((2, 3)))


def train_step(model, x, y):
    """Forward, cross-entropy, backward; returns (wall, process CPU) s."""
    t0, c0 = time.perf_counter(), time.process_time()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    t, c = time.perf_counter() - t0, time.process_time() - c0
    for p in model.parameters():
        p.grad = None
    return t, c


def profile(model, x, y, rows):
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    train_step(model, x, y)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(model, x, y)
    print(prof.key_averages().table(sort_by='self_cpu_time_total',
                                    row_limit=rows))


def _block_step(block, x, g):
    block(x).backward(g)
    x.grad = None


def attention_share(models, batch, size, reps):
    """Per stage: the attention blocks alone, forward + backward, x blocks."""
    print('attention blocks alone (forward + backward at the stage shape, '
          'x number of blocks), ms:')
    print(f'{"stage":>18} | ' + ' | '.join(f'{k:>8}' for k in models))
    totals = {k: 0.0 for k in models}
    for i, n in enumerate((3, 4, 6, 3)):
        c, s = 256 * 2**i, size // 4 // 2**i
        x = torch.randn(batch, c, s, s, requires_grad=True)
        g = torch.randn_like(x)
        blocks = {k: getattr(m.backbone, f'layer{i + 1}')[0].attention
                  for k, m in models.items() if k != 'plain'}
        times = interleaved({k: timed(functools.partial(_block_step, b, x, g))
                             for k, b in blocks.items()}, reps, warmup=1)
        row = {k: statistics.median(v) * 1e3 * n for k, v in times.items()}
        for k, v in row.items():
            totals[k] += v
        print(f'{f"{n} x {c}x{s}x{s}":>18} | ' + ' | '.join(
            f'{row.get(k, 0.0):8.1f}' for k in models))
    print(f'{"total":>18} | ' + ' | '.join(f'{totals[k]:8.1f}'
                                           for k in models))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--reps', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--profile', action='store_true')
    parser.add_argument('--rows', type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    se = se_cfg()
    models = {'plain': Net(None), 'se': Net(se),
              'sase': Net(dict(type='sase_mm.SASE'))}
    for m in models.values():
        m.train()
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 1000, (args.batch, ))
    se_name = se['type']
    print(f'ResNet-50 training step (forward + backward), batch {args.batch} '
          f'x 3 x {args.size} x {args.size}, {torch.get_num_threads()} '
          f'threads, median of {args.reps} interleaved reps; SE = {se_name}')

    load0 = os.getloadavg()[0]
    runs = interleaved({k: functools.partial(train_step, m, x, y)
                        for k, m in models.items()}, args.reps, args.warmup)
    times = {k: [t for t, _ in v] for k, v in runs.items()}
    cpu = {k: [c for _, c in v] for k, v in runs.items()}
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    mcpu = {k: statistics.median(v) * 1e3 for k, v in cpu.items()}
    params = {k: sum(p.numel() for p in m.parameters())
              for k, m in models.items()}
    print(f'load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at '
          f'end ({os.cpu_count()} CPUs)')
    print(f'{"model":>16} | {"params":>11} | {"wall ms":>8} | {"x plain":>7} '
          f'| {"x SE":>5} | {"CPU ms":>8} | {"x plain":>7} | {"x SE":>5}')
    for k, m in models.items():
        print(f'{"ResNet-50 " + k:>16} | {params[k]:11,} | {med[k]:8.0f} | '
              f'{med[k] / med["plain"]:6.2f}x | {med[k] / med["se"]:4.2f}x | '
              f'{mcpu[k]:8.0f} | {mcpu[k] / mcpu["plain"]:6.2f}x | '
              f'{mcpu[k] / mcpu["se"]:4.2f}x')
    best = {k: min(v) * 1e3 for k, v in times.items()}
    print(f'best of {args.reps} (wall, least disturbed): SASE '
          f'{best["sase"] / best["plain"]:.2f}x plain, '
          f'{best["sase"] / best["se"]:.2f}x SE; SE '
          f'{best["se"] / best["plain"]:.2f}x plain')
    r_plain, r_se = med['sase'] / med['plain'], med['sase'] / med['se']
    ok = r_plain <= TARGET_PLAIN and r_se <= TARGET_SE
    print(f'SASE (wall): {r_plain:.2f}x plain (target <= {TARGET_PLAIN}x), '
          f'{r_se:.2f}x SE (target <= {TARGET_SE}x): '
          f'{"meets" if ok else "MISSES"} the target')
    if args.profile:
        attention_share(models, args.batch, args.size, max(3, args.reps // 2))
        print('top operators of one SASE step (self CPU time):')
        profile(models['sase'], x, y, args.rows)


if __name__ == '__main__':
    main()
