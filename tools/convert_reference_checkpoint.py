"""Convert the SASE authors' released checkpoints to sase_mm's layout.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333). Reads an ImageNet ResNet-50/101 checkpoint in the
reference (torchvision + ``attention`` submodule) layout, or a reference
mmdet detector, and writes one that loads unchanged into this project's
configs (``backbone=dict(type='sase_mm.SASEResNet', depth=...)``): with
``load_from=DST`` for a classifier or detector, or as a detector backbone's
``init_cfg=dict(type='Pretrained', prefix='backbone.', checkpoint=DST)``.
Key mapping: docs/spec.md section 8 and
``sase_mm/apis/reference_layout.py``.

Usage::

    python tools/convert_reference_checkpoint.py SRC DST [--depth 50]
        [--layout classifier|detector]

Exit status 1 with a message naming the offending keys when the checkpoint
does not match the reference layout (unknown / missing keys, shapes, depth).
"""
import argparse
import sys

from sase_mm.apis.reference_layout import (CLASSIFIER, DETECTOR,
                                           ConversionError,
                                           convert_checkpoint)
from sase_mm.utils.safe_checkpoint import UntrustedCheckpointError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='reference checkpoint (.pth)')
    parser.add_argument('dst', help='output checkpoint (written atomically)')
    parser.add_argument('--depth', type=int, default=None,
                        help='expected ResNet depth (default: read from the '
                        'keys); a checkpoint of another depth is an error')
    parser.add_argument('--layout', choices=(CLASSIFIER, DETECTOR),
                        default=None,
                        help='default: detected (backbone.* keys: detector)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        s = convert_checkpoint(args.src, args.dst, depth=args.depth,
                               layout=args.layout)
    except (ConversionError, FileNotFoundError,
            UntrustedCheckpointError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    model = f'ResNet-{s["depth"]}' + (' + SASE' if s['attention'] else '')
    print(f'converted {args.src} ({s["source"]}) -> {args.dst}')
    print(f'  model:      {model} {s["layout"]}, blocks per stage '
          f'{s["stages"]}, {s["attention_blocks"]} attention blocks')
    print(f'  tensors:    {s["tensors"]} ({s["backbone_tensors"]} backbone), '
          f'{s["parameters"]:,} parameters')
    if s['layout'] == CLASSIFIER:
        print(f'  head:       fc -> head.fc, {s["num_classes"]} classes')
    else:
        print(f'  unchanged:  {", ".join(s["passthrough"]) or "-"}')
    if s['filled_num_batches_tracked']:
        print(f'  filled:     {s["filled_num_batches_tracked"]} missing BN '
              f'num_batches_tracked with 0 (as torch does at load time)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
