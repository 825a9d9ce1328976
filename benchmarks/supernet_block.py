"""Forward + backward latency of the SASE supernet block (``SASESearch``).

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333); DARTS (Liu et al., ICLR 2019). During the search every
edge of the block runs all seven candidate operations (42 per block) and
mixes them with softmax(alpha), so the search step costs a multiple of a
plain network's. This script times, at the CIFAR ResNet-20 stage shapes
(batch 64: 16x32x32, 32x16x16, 64x8x8, 2 CPU threads):

* ``SASESearch`` (dense softmax weights) vs the fixed ``SASE`` block
  (paper genotype) vs an SE block (reduction 16);
* and one training step of the ResNet-20 supernet vs the plain ResNet-20
  (target: at most 2.5x, as ``search_step.py``), and of ResNet-20 with the
  fixed SASE block (target: at most 1.2x) and with SE, with the steps of
  ``search_step.py`` (forward, cross-entropy, backward, SGD step), so both
  scripts report the same ratios.

Candidates are interleaved repetition by repetition and the medians
compared, so the ratios are measured in one run under the same load.

Usage::

    python benchmarks/supernet_block.py [--reps 15] [--threads 2]
"""
import argparse
import statistics

import torch

from block_latency import CLOCKS, se_block
from interleave import interleaved, timed

from sase_mm.models.sase import SASE, SASESearch, mixing  # noqa

SHAPES = ((16, 32, 32), (32, 16, 16), (64, 8, 8))
STEP_TARGET = 2.5


def interleaved_medians(candidates, reps, warmup, clock):
    """Median seconds of each zero-argument callable, interleaved."""
    times = interleaved({k: timed(fn, clock) for k, fn in candidates.items()},
                        reps, warmup)
    return {k: statistics.median(v) for k, v in times.items()}


def block_step(block, x, grad, mix=None):
    """One forward+backward of ``block`` on ``x``; a searchable block at
    the mixing weights ``mix``, bound for the pass as a search binds
    them."""
    def run():
        if mix is None:
            y = block(x)
        else:
            with mixing(block.arch_alphas, mix):
                y = block(x)
        y.backward(grad)
        x.grad = None
    return run


def blocks_table(args, clock):
    print(f'Blocks, forward+backward, batch {args.batch}')
    header = (f'{"shape":>10} | {"SE ms":>7} | {"SASE ms":>8} | '
              f'{"search ms":>9} | {"search/SASE":>11} | {"search/SE":>9}')
    print(header)
    print('-' * len(header))
    for c, h, w in SHAPES:
        x = torch.randn(args.batch, c, h, w, requires_grad=True)
        grad = torch.randn_like(x)
        search = SASESearch(c, spatial_size=(h, w))
        weights = torch.randn(6, 7).softmax(-1).requires_grad_()
        cands = {
            'se': block_step(se_block(c), x, grad),
            'sase': block_step(SASE(c, spatial_size=(h, w)), x, grad),
            'search': block_step(search, x, grad, weights),
        }
        t = interleaved_medians(cands, args.reps, args.warmup, clock)
        print(f'{f"{c}x{h}x{w}":>10} | {t["se"] * 1e3:7.2f} | '
              f'{t["sase"] * 1e3:8.2f} | {t["search"] * 1e3:9.2f} | '
              f'{t["search"] / t["sase"]:10.2f}x | '
              f'{t["search"] / t["se"]:8.2f}x')


def resnet20_table(args, clock):
    # The steps are search_step.py's (one definition of a training step:
    # forward, loss, backward, SGD step; the supernet mixed by the detached
    # softmax(alpha), as in the search's weight step), so the two scripts
    # measure the same ratio.
    from search_step import TARGETS, build_candidates
    cands = build_candidates(args.batch, fixed=True, se=True)
    t = interleaved_medians(
        {k: cands[k] for k in ('plain', 'se', 'fixed', 'supernet')},
        args.reps, args.warmup, clock)
    ratio = t['supernet'] / t['plain']
    print(f'\nResNet-20 training step (forward, loss, backward, SGD), batch '
          f'{args.batch} (as benchmarks/search_step.py)')
    print(f'plain {t["plain"] * 1e3:.1f} ms | + SE {t["se"] * 1e3:.1f} ms '
          f'({t["se"] / t["plain"]:.2f}x) | + SASE {t["fixed"] * 1e3:.1f} '
          f'ms ({t["fixed"] / t["plain"]:.2f}x) | supernet '
          f'{t["supernet"] * 1e3:.1f} ms ({ratio:.2f}x)')
    for name, r, target in (
            ('supernet', ratio, STEP_TARGET),
            ('fixed SASE', t['fixed'] / t['plain'],
             TARGETS['fixed_vs_plain'])):
        verdict = 'meets' if r <= target else 'MISSES'
        print(f'{name} step {r:.2f}x plain: {verdict} the target of <= '
              f'{target}x')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--reps', type=int, default=15)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--clock', choices=sorted(CLOCKS), default='wall',
                        help='wall time (default) or process CPU time')
    parser.add_argument('--skip-resnet', action='store_true',
                        help='only the block table')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    clock = CLOCKS[args.clock]
    print(f'SASESearch vs SASE vs SE, {torch.get_num_threads()} threads, '
          f'median of {args.reps} interleaved reps, {args.clock} clock')
    blocks_table(args, clock)
    if not args.skip_resnet:
        resnet20_table(args, clock)


if __name__ == '__main__':
    main()
