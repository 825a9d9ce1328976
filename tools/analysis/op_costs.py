"""Per-operation costs of the SASE search space, for the cost-aware search.

SASE (arXiv 2411.08333) searches its block for accuracy alone; with
``DARTSSearch(arch_cost=dict(file=COSTS, weight=lambda))`` the alpha step
also minimises ``lambda * sum_e softmax(alpha_e) . cost_e``
(``sase_mm/models/search/cost.py``, docs/search_options.md). This tool
measures ``cost_e``: every operation of the declared operation sets
(``sase_mm/models/sase/space.py``) at the shape its edge sees in the block
(docs/spec.md section 1) for each given stage (channels C, feature size
H x W), summed over the stages, and writes the JSON that ``cost.py`` reads
(atomically).

* ``--metric flops`` (deterministic): mmengine's ``FlopAnalyzer``
  (multiply-adds of convolutions and matrix products), plus one operation
  per element for the element-wise operations and reductions mmengine does
  not count (without them every squeeze operation but one would cost 0).
* ``--metric latency``: the median forward time on this machine (eval mode,
  no grad), over ``--reps`` repetitions in which every operation runs once,
  in an order shuffled each repetition, so that drift hits all alike.

Edges with the same operation set and input shape (E1 / E2, E3 / E4) get the
same measured row.

Usage::

    python tools/analysis/op_costs.py --metric flops --out costs.json
    # the paper's search supernet (ResNet-20 on CIFAR) is the default:
    #   --channels 16 32 64 --size 32 16 8
    python tools/analysis/op_costs.py --metric latency --device cuda \\
        --channels 256 512 1024 2048 --size 56 28 14 7 --out r50_gpu.json
"""
import argparse
import json
import random
import statistics
import sys
import time
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn

# The shape each operation set's edges see, for a block input (B, C, H, W).
INPUT_SHAPES = {
    'channel_squeeze': lambda b, c, h, w: (b, c, h, w),
    'channel_excitation': lambda b, c, h, w: (b, c, 1, 1),
    'spatial_squeeze': lambda b, c, h, w: (b, c, h, w),
    'spatial_excitation': lambda b, c, h, w: (b, 1, h, w),
}
UNITS = dict(flops='operations (multiply-adds + element-wise)',
             latency='seconds (median forward)')
# Operations that only view their input: no arithmetic.
_FREE = ('aten::view_as', 'aten::view', 'aten::reshape', 'aten::expand',
         'aten::expand_as', 'aten::flatten', 'aten::squeeze',
         'aten::unsqueeze', 'aten::size', 'aten::contiguous')


class _Op(nn.Module):
    """One operation called on its input alone (``op(x)``)."""

    def __init__(self, op: nn.Module):
        super().__init__()
        self.op = op

    def forward(self, x):
        return self.op(x)


def _numel(value) -> int:
    from mmengine.analysis.jit_handles import get_shape
    try:
        shape = get_shape(value)
    except Exception:  # not a tensor value
        return 0
    n = 1
    for s in shape or [0]:
        n *= s
    return n


def _elementwise(inputs, outputs) -> int:
    # One operation per element of the largest tensor read or written.
    return max([_numel(v) for v in list(inputs) + list(outputs)] + [0])


def op_flops(module: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of ``module(x)`` (module docstring), an int."""
    from mmengine.analysis import FlopAnalyzer
    module = _Op(module).eval()

    def analyzer(extra):
        fa = FlopAnalyzer(module, (x, ))
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        if extra:
            fa.set_op_handle(**extra)
        return fa

    with torch.no_grad():
        first = analyzer({})
        first.total()  # traces; then the ops it could not count are known
        missing = [n for n in first.unsupported_ops() if n not in _FREE]
        return int(analyzer({n: _elementwise for n in missing}).total())


def _stages(channels: Sequence[int], sizes: Sequence[int]
            ) -> List[Tuple[int, int, int]]:
    if len(sizes) == 1:
        sizes = list(sizes) * len(channels)
    if len(sizes) != len(channels):
        raise ValueError(f'--size gives one size for every stage, or one '
                         f'for all: {len(channels)} channels, {len(sizes)} '
                         f'sizes')
    for v in list(channels) + list(sizes):
        if v < 1:
            raise ValueError(f'channels and sizes must be >= 1, got {v}')
    return [(c, s, s) for c, s in zip(channels, sizes)]


def _build(op_set, name, c, h, w, batch, device):
    module = op_set.build(name, c, (h, w)).to(device).eval()
    x = torch.randn(*INPUT_SHAPES[op_set.name](batch, c, h, w),
                    device=device)
    return module, x


def measure(metric: str = 'flops', channels: Sequence[int] = (16, 32, 64),
            sizes: Sequence[int] = (32, 16, 8), batch: int = 1,
            device: str = 'cpu', reps: int = 30, warmup: int = 3,
            seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Costs of every operation of every set, summed over the stages.

    Args:
        metric: ``'flops'`` or ``'latency'``.
        channels: C of each stage's blocks.
        sizes: H = W of each stage (one value: all stages).
        batch: B of the inputs (1).
        device: where the operations run (latency).
        reps, warmup: latency repetitions (median of ``reps``).
        seed: the inputs and the shuffled orders.

    Returns:
        {operation set name: {operation name: cost}}.
    """
    from sase_mm.models.sase.space import OP_SETS
    if metric not in UNITS:
        raise ValueError(f'metric must be one of {sorted(UNITS)}, got '
                         f'{metric!r}')
    if batch < 1:
        raise ValueError(f'--batch must be >= 1, got {batch}')
    if str(device).startswith('cuda') and not torch.cuda.is_available():
        raise ValueError(f'--device {device}: CUDA is not available here')
    torch.manual_seed(seed)
    stages = _stages(channels, sizes)
    cases = {}  # (set, op, stage) -> (module, input)
    for op_set in OP_SETS.values():
        for name in op_set.names:
            for k, (c, h, w) in enumerate(stages):
                cases[(op_set.name, name, k)] = _build(op_set, name, c, h, w,
                                                       batch, device)
    if metric == 'flops':
        per_case = {key: float(op_flops(m, x))
                    for key, (m, x) in cases.items()}
    else:
        per_case = _latencies(cases, reps, warmup, device, seed)
    out = {s.name: {n: 0.0 for n in s.names} for s in OP_SETS.values()}
    for (set_name, name, _), value in per_case.items():
        out[set_name][name] += value
    return out


def _latencies(cases, reps, warmup, device, seed) -> Dict:
    """Median forward seconds of each case, interleaved repetitions."""
    if reps < 1:
        raise ValueError(f'--reps must be >= 1, got {reps}')
    sync = torch.cuda.synchronize if str(device).startswith('cuda') else \
        (lambda: None)
    rng = random.Random(seed)
    keys = list(cases)
    times = {k: [] for k in keys}
    with torch.no_grad():
        for r in range(warmup + reps):
            rng.shuffle(keys)
            for key in keys:
                module, x = cases[key]
                sync()
                t0 = time.perf_counter()
                module(x)
                sync()
                if r >= warmup:
                    times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def cost_table(metric: str = 'flops', **kwargs) -> dict:
    """The costs JSON (as a dict) that ``sase_mm.models.search.cost``
    reads: one entry per edge of the block; arguments of :func:`measure`."""
    from sase_mm.models.sase.space import EDGES
    per_set = measure(metric, **kwargs)
    return dict(
        metric=metric, unit=UNITS[metric],
        channels=list(kwargs.get('channels', (16, 32, 64))),
        sizes=list(kwargs.get('sizes', (32, 16, 8))),
        batch=kwargs.get('batch', 1), device=str(kwargs.get('device', 'cpu')),
        torch=torch.__version__,
        costs={e.name: dict(per_set[e.op_set.name]) for e in EDGES})


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Measure the cost of every SASE operation at the '
        'block\'s shapes and write the costs JSON of the cost-aware search')
    parser.add_argument('--metric', choices=sorted(UNITS), default='flops',
                        help='flops (deterministic) or latency (this '
                        'machine, median)')
    parser.add_argument('--channels', type=int, nargs='+',
                        default=[16, 32, 64],
                        help='C of each stage (default: ResNet-20\'s)')
    parser.add_argument('--size', type=int, nargs='+', default=[32, 16, 8],
                        help='H = W of each stage, or one for all (default: '
                        'ResNet-20 on 32x32 CIFAR)')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--device', default='cpu', help='latency only')
    parser.add_argument('--reps', type=int, default=30,
                        help='latency repetitions (median)')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='op_costs.json',
                        help='the JSON to write (atomically)')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from sase_mm.utils.atomic import atomic_write_text
    try:
        table = cost_table(args.metric, channels=args.channels,
                           sizes=args.size, batch=args.batch,
                           device=args.device, reps=args.reps,
                           warmup=args.warmup, seed=args.seed)
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(1)
    atomic_write_text(args.out, json.dumps(table, indent=2))
    for edge, row in table['costs'].items():
        best = min(row, key=row.get)
        print(f'{edge:<22} cheapest {best:<14} ' + ' '.join(
            f'{op}={v:.4g}' for op, v in row.items()))
    print(f'{args.metric} ({table["unit"]}) written to {args.out}')
    return table


if __name__ == '__main__':
    main()
