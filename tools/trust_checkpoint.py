"""Convert a checkpoint you trust into one the safe loader reads.

sase_mm (SASE, arXiv 2411.08333) loads every checkpoint with torch's
``weights_only=True`` and refuses files that name code (see
``docs/security.md``). A file you made yourself, or got from a source you
trust, may still be refused because it pickles some harmless object of its
own. This tool loads it ONCE with full pickle, which runs any code inside
it, keeps only tensors, numbers, strings, containers, numpy arrays and
mmengine's ``HistoryBuffer`` s, and writes the result (atomically) where
the safe loader reads it. It refuses to run without ``--i-trust-this-file``.

Usage::

    python tools/trust_checkpoint.py SRC DST --i-trust-this-file
"""
import argparse
import os.path as osp
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Re-save a checkpoint you trust so that sase_mm\'s safe '
        'loader (weights_only=True) reads it. Loading SRC runs any code it '
        'contains.')
    parser.add_argument('src', help='the checkpoint you trust (.pth)')
    parser.add_argument('dst', help='output checkpoint (written atomically)')
    parser.add_argument(
        '--i-trust-this-file', action='store_true',
        help='required: confirms that you trust SRC, whose code runs when it '
        'is loaded')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.i_trust_this_file:
        print(f'error: loading {args.src} with full pickle runs any code it '
              f'contains. Only do this for a file you trust, and confirm '
              f'with --i-trust-this-file.', file=sys.stderr)
        return 2
    if not osp.isfile(args.src):
        print(f'error: checkpoint {args.src!r} does not exist',
              file=sys.stderr)
        return 1
    from sase_mm.utils.safe_checkpoint import resave_trusted
    dropped = resave_trusted(args.src, args.dst)
    print(f'wrote {args.dst}; it loads with weights_only=True')
    for item in dropped:
        print(f'  dropped {item}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
