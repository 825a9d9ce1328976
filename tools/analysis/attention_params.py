"""Parameters each attention module adds to an ImageNet ResNet.

For every attention type (default: the zoo and SASE) this builds a ResNet
(1000 classes unless told otherwise) with the module after the last BN of
every residual block, before the shortcut add (docs/spec.md section 4), and
prints the total parameter count, the count added to the plain ResNet, and
the paper's figure where the SASE paper (arXiv 2411.08333) gives one.

Two routes build the network:

* ``sase``: ``sase_mm.SASEResNet(depth, attn_cfg=...)`` (needs mmpretrain)
  plus a 1000-way linear head, the project's own backbone;
* ``torchvision``: torchvision's ResNet with ``bn3`` (``bn2`` in basic
  blocks) replaced by ``Sequential(bn, attention)``: same blocks, no
  mmpretrain needed.

``auto`` uses ``sase`` when SASEResNet can be built and ``torchvision``
otherwise; ``both`` builds both and fails if the counts differ.

Usage::

    python tools/analysis/attention_params.py [--types SE ECA ...]
        [--depth 50] [--num-classes 1000] [--route auto] [--markdown]
"""
import argparse
import sys
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

# The SASE paper's ImageNet table (params, M); None where it has no entry.
PAPER_PARAMS_M = {
    50: dict(plain=25.56, SRM=25.56, GSoP=28.20, ECA=25.56, GCT=25.56,
             MCA=25.56, EAN=25.56, SASE=28.10),
    101: dict(plain=44.55, SRM=44.55, GSoP=48.90, ECA=44.55, GCT=44.55,
              MCA=44.68, EAN=44.55, SASE=49.36),
}
DEFAULT_TYPES = ('SE', 'SSA', 'ECA', 'CBAM', 'SRM', 'GCT', 'GatedCT', 'GSoP',
                 'MCA', 'EAN', 'SASE')


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _attn_cfg(name: str) -> dict:
    return dict(type=name if '.' in name else f'sase_mm.{name}')


def torchvision_resnet(depth: int, attn_type: Optional[str] = None,
                       num_classes: int = 1000) -> nn.Module:
    """torchvision's ResNet with ``attn_type`` after each block's last BN."""
    import torchvision
    from torchvision.models.resnet import BasicBlock, Bottleneck

    import sase_mm  # noqa: F401  (registers the attention modules)
    from sase_mm.registry import MODELS

    builders = {18: torchvision.models.resnet18,
                34: torchvision.models.resnet34,
                50: torchvision.models.resnet50,
                101: torchvision.models.resnet101,
                152: torchvision.models.resnet152}
    if depth not in builders:
        raise ValueError(f'depth must be one of {sorted(builders)}, got '
                         f'{depth}')
    model = builders[depth](weights=None, num_classes=num_classes)
    if attn_type is None:
        return model
    for block in model.modules():
        if isinstance(block, (Bottleneck, BasicBlock)):
            name = 'bn3' if isinstance(block, Bottleneck) else 'bn2'
            bn = getattr(block, name)
            attention = MODELS.build(
                dict(_attn_cfg(attn_type), in_channels=bn.num_features))
            setattr(block, name, nn.Sequential(bn, attention))
    return model


def sase_resnet(depth: int, attn_type: Optional[str] = None,
                num_classes: int = 1000) -> nn.Module:
    """``sase_mm.SASEResNet`` + global pooling + a linear head."""
    import sase_mm  # noqa: F401
    from sase_mm.registry import MODELS

    cfg = dict(type='sase_mm.SASEResNet', depth=depth,
               attn_cfg=None if attn_type is None else _attn_cfg(attn_type))
    backbone = MODELS.build(cfg)
    width = 2048 if depth >= 50 else 512
    return nn.Sequential(backbone, nn.Linear(width, num_classes))


def sase_route_available() -> bool:
    try:
        sase_resnet(18)
    except Exception:  # mmpretrain or SASEResNet missing
        return False
    return True


def param_table(types: Sequence[str] = DEFAULT_TYPES, depth: int = 50,
                num_classes: int = 1000, route: str = 'auto'
                ) -> List[Dict]:
    """One row per type: ``type``, ``params``, ``added``, ``paper_m``.

    The first row is the plain ResNet (``type='plain'``). ``route`` is
    ``'torchvision'``, ``'sase'``, ``'both'`` (must agree) or ``'auto'``.
    """
    if route not in ('auto', 'torchvision', 'sase', 'both'):
        raise ValueError(f"route must be 'auto', 'torchvision', 'sase' or "
                         f"'both', got {route!r}")
    if route == 'auto':
        route = 'sase' if sase_route_available() else 'torchvision'
    builders = {'torchvision': [torchvision_resnet], 'sase': [sase_resnet],
                'both': [torchvision_resnet, sase_resnet]}[route]
    paper = PAPER_PARAMS_M.get(depth, {})
    rows = []
    base = None
    for name in ('plain', ) + tuple(types):
        counts = {}
        for build in builders:
            # torchvision's on the meta device: shapes only, no weight
            # initialisation (mmpretrain's ResNet calls .item() when built,
            # which meta tensors cannot do).
            device = 'meta' if build is torchvision_resnet else 'cpu'
            with torch.device(device):
                model = build(depth, None if name == 'plain' else name,
                              num_classes)
            counts[build.__name__] = count_params(model)
        if len(set(counts.values())) != 1:
            raise RuntimeError(f'{name}: the routes disagree: {counts}')
        params = next(iter(counts.values()))
        base = params if base is None else base
        rows.append(dict(type=name, params=params, added=params - base,
                         paper_m=paper.get(name), route=route))
    return rows


def format_table(rows: List[Dict], markdown: bool = False) -> str:
    head = ('module', 'params', 'added', 'params (M)', 'paper (M)')
    lines = []
    for r in rows:
        paper = '-' if r['paper_m'] is None else f"{r['paper_m']:.2f}"
        lines.append((r['type'], f"{r['params']:,}", f"{r['added']:,}",
                      f"{r['params'] / 1e6:.2f}", paper))
    if markdown:
        out = ['| ' + ' | '.join(head) + ' |',
               '|' + '---|' * len(head)]
        out += ['| ' + ' | '.join(line) + ' |' for line in lines]
        return '\n'.join(out)
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    return '\n'.join('  '.join(x.rjust(w) for x, w in zip(line, widths))
                     for line in [head] + lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--types', nargs='+', default=list(DEFAULT_TYPES),
                        help='registered attention types (sase_mm names)')
    parser.add_argument('--depth', type=int, default=50)
    parser.add_argument('--num-classes', type=int, default=1000)
    parser.add_argument('--route', default='auto',
                        choices=('auto', 'torchvision', 'sase', 'both'))
    parser.add_argument('--markdown', action='store_true')
    args = parser.parse_args(argv)
    rows = param_table(args.types, args.depth, args.num_classes, args.route)
    print(f'ResNet-{args.depth}, {args.num_classes} classes, attention after '
          f"the last BN of every block (route: {rows[0]['route']})")
    print(format_table(rows, args.markdown))
    return 0


if __name__ == '__main__':
    sys.exit(main())
