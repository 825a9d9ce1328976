"""Random SASE genotypes: the random-search baseline of the paper's tables.

SASE (arXiv 2411.08333) compares its searched block with "SASE (random)":
blocks whose six operations are drawn at random. This tool draws N distinct
genotypes, each edge's operation uniformly from that edge's declared set,
deterministically in the seed (``sase_mm/models/sase/random_genotypes.py``),
and writes each as a genotype file of the accepted form (``genotype = [...]``,
read by ``Genotype.load`` and never executed; or JSON), atomically. A file
drops into a training config by path, like a search's ``genotype.py``::

    --cfg-options \
        model.backbone.attn_cfg.genotype=work_dirs/random/random_s0_000.py

Usage::

    python tools/sample_genotypes.py --num 5 --seed 0 \
        --out-dir work_dirs/random
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import List


def write(genotypes, seed: int, out_dir: str, fmt: str = 'py') -> List[str]:
    """Writes one file per genotype (atomically); returns the paths."""
    from sase_mm.utils.atomic import atomic_write_text
    if fmt not in ('py', 'json'):
        raise ValueError(f"--format must be 'py' or 'json', got {fmt!r}")
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i, g in enumerate(genotypes):
        path = osp.join(out_dir, f'random_s{seed}_{i:03d}.{fmt}')
        if fmt == 'py':
            text = (f'# SASE random genotype {i} of {len(genotypes)} (seed '
                    f'{seed}), tools/sample_genotypes.py\n' + g.to_config())
        else:
            text = json.dumps(dict(genotype=list(g), seed=seed, index=i),
                              indent=2)
        atomic_write_text(path, text)
        paths.append(path)
    return paths


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write N random SASE genotype files (the "SASE '
        '(random)" baseline)')
    parser.add_argument('--num', type=int, required=True,
                        help='how many distinct genotypes')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out-dir', default='work_dirs/random_genotypes')
    parser.add_argument('--format', choices=('py', 'json'), default='py',
                        help='genotype = [...] (default) or JSON')
    return parser.parse_args(argv)


def main(argv=None) -> List[str]:
    from sase_mm.models.sase.random_genotypes import (num_genotypes,
                                                      sample_genotypes)
    args = parse_args(argv)
    space = num_genotypes()
    if not 1 <= args.num <= space:
        print(f'error: --num must be an int in [1, {space}] (the number of '
              f'SASE blocks), got {args.num!r}', file=sys.stderr)
        sys.exit(1)
    genotypes = sample_genotypes(args.num, args.seed)
    paths = write(genotypes, args.seed, args.out_dir, args.format)
    for path, g in zip(paths, genotypes):
        print(f'{path}: {g}')
    return paths


if __name__ == '__main__':
    main()
