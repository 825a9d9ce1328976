"""The cost-aware term of the alpha objective: a table of operation costs.

An option beyond SASE (arXiv 2411.08333), which searches for accuracy alone;
the expected-cost penalty follows the differentiable latency losses of
FBNet (Wu et al., CVPR 2019) and ProxylessNAS (Cai et al., ICLR 2019). With
a (6, 7) table ``cost_e`` of per-operation costs (FLOPs or latency, one row
per edge of the block, columns in the alpha's column order) the alpha step
minimises

    L_val(w', alpha) + lambda * sum_e softmax(alpha_e) . cost_e

i.e. the search loss plus ``lambda`` times the block's expected cost under
the mixing weights. This module owns the table (read from the JSON that
``tools/analysis/op_costs.py`` writes, validated as a hostile file), the
penalty and its alpha gradient; ``DARTSSearch(arch_cost=dict(file=...,
weight=lambda))`` adds that gradient to the architecture gradient. Off by
default: without ``arch_cost`` the search is the paper's.

The costs file (docs/search_options.md)::

    {"metric": "flops", "unit": "...",
     "costs": {"channel_squeeze": {"gap": 1.0, ..., "cov_pool": 9.0},
               ... one entry per edge, each naming the seven operations
               of its set (readable or reference spelling)}}

By default the table is divided by its largest entry (``normalize=True``),
so the penalty lies in [0, 6] whatever the unit and ``lambda`` keeps one
meaning across metrics and shapes.
"""
import math
import os
from typing import Mapping, Optional, Tuple

import torch

from ...utils.json_file import read_json
from ..sase.mixing import softmax_mix
from ..sase.space import EDGES, NUM_EDGES, NUM_OPS

MAX_FILE_BYTES = 1 << 20
# Larger than any FLOP count of one block (about 1e10 at ResNet-50's first
# stage) by far, small enough that the normalised table keeps its precision.
MAX_COST = 1e15
FORMAT = ('{"costs": {<edge>: {<operation>: <number >= 0>, ... the 7 '
          'operations of the edge\'s set}, ... the 6 edges ' +
          ', '.join(e.name for e in EDGES) + '}} (what tools/analysis/'
          'op_costs.py writes)')


class CostFileError(ValueError):
    """A costs file that cannot be used, with what is wrong and the form."""


def _number(value, where: str) -> float:
    # bool is an int subclass: true / false are not costs.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CostFileError(f'{where} must be a number, got '
                            f'{type(value).__name__} {value!r:.60}')
    if isinstance(value, int) and abs(value) > MAX_COST:
        value = math.inf if value > 0 else -math.inf  # float() overflows
    value = float(value)
    if value > MAX_COST:
        raise CostFileError(f'{where} is {value:g}, larger than {MAX_COST:g}'
                            f' (not a cost of one operation)')
    if not math.isfinite(value):
        raise CostFileError(f'{where} must be finite, got {value}')
    if value < 0:
        raise CostFileError(f'{where} must be >= 0, got {value}')
    return value


def parse_costs(data) -> torch.Tensor:
    """The (6, 7) cost table from parsed JSON (module docstring's form).

    Args:
        data: the parsed file, a dict with ``costs``.

    Returns:
        float64 (6, 7): row e the costs of edge e's operations, in column
        order.

    Raises:
        CostFileError: wrong shape, unknown or missing edges or operations,
            an operation given twice, a cost that is no finite number in
            [0, MAX_COST].
    """
    if not isinstance(data, Mapping) or not isinstance(
            data.get('costs'), Mapping):
        got = type(data).__name__ if not isinstance(data, Mapping) else \
            f'a dict whose "costs" is {type(data.get("costs")).__name__}'
        raise CostFileError(f'expected a JSON object with a "costs" object, '
                            f'got {got}')
    costs = data['costs']
    names = [e.name for e in EDGES]
    unknown = sorted(map(str, set(costs) - set(names)))
    missing = [n for n in names if n not in costs]
    if unknown or missing:
        raise CostFileError(f'"costs" is keyed by the {NUM_EDGES} edge names '
                            f'{names}; unknown: {unknown}, missing: '
                            f'{missing}')
    table = torch.zeros(NUM_EDGES, NUM_OPS, dtype=torch.float64)
    for i, edge in enumerate(EDGES):
        row = costs[edge.name]
        if not isinstance(row, Mapping):
            raise CostFileError(f'costs of edge {edge.name!r} must be an '
                                f'object {{operation: cost}}, got '
                                f'{type(row).__name__}')
        seen = {}
        for op, value in row.items():
            if op not in edge.op_set:
                raise CostFileError(
                    f'edge {edge.name!r} ({edge.op_set.name}) has no '
                    f'operation {op!r}; its operations: '
                    f'{list(edge.op_set.names)} (or the reference spelling '
                    f'{list(edge.op_set.ref_names)})')
            name = edge.op_set.canonical(op)
            if name in seen:
                raise CostFileError(f'edge {edge.name!r}: operation {name!r}'
                                    f' is given twice ({seen[name]!r} and '
                                    f'{op!r})')
            seen[name] = op
            table[i, edge.op_set.index(name)] = _number(
                value, f'cost of {edge.name}/{name}')
        absent = [n for n in edge.op_set.names if n not in seen]
        if absent:
            raise CostFileError(f'edge {edge.name!r} lacks the costs of '
                                f'{absent}')
    return table


def load_costs(path: str) -> torch.Tensor:
    """Reads and validates a costs file: :func:`parse_costs` of its JSON.

    Raises:
        FileNotFoundError: no such file.
        CostFileError: naming the file, for any other problem.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'costs file {path!r} does not exist (write '
                                f'one with tools/analysis/op_costs.py)')
    try:
        return parse_costs(read_json(path, MAX_FILE_BYTES))
    except RecursionError:
        why = 'it is nested too deeply'
    except ValueError as err:  # JSONFileError and CostFileError too
        why = str(err)
    raise CostFileError(f'cannot read the operation costs from {path!r}: '
                        f'{why}. Expected: {FORMAT}') from None


def expected_cost(alphas: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
    """``sum_e softmax(alpha_e) . cost_e``, differentiable in ``alphas``.

    Args:
        alphas: (6, 7) architecture weights.
        costs: (6, 7) cost table.

    Returns:
        The scalar expected cost of the block under the mixing weights.
    """
    return (softmax_mix(alphas) * costs.to(alphas)).sum()


class ArchCost:
    """The weighted cost penalty of one search.

    Args:
        costs: (6, 7) non-negative cost table (:func:`load_costs`).
        weight (float): lambda, >= 0.
        normalize (bool): divide the table by its largest entry (default).
        source (str): where the table came from, for messages.
    """

    def __init__(self, costs: torch.Tensor, weight: float,
                 normalize: bool = True, source: str = 'the table'):
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                or not math.isfinite(weight) or weight < 0:
            raise ValueError(f'arch_cost weight (lambda) must be a finite '
                             f'number >= 0, got {weight!r}')
        if tuple(costs.shape) != (NUM_EDGES, NUM_OPS):
            raise ValueError(f'the cost table must be ({NUM_EDGES}, '
                             f'{NUM_OPS}), got {tuple(costs.shape)}')
        costs = costs.detach().double()
        if not bool(torch.isfinite(costs).all()) or bool((costs < 0).any()):
            raise ValueError('costs must be finite and >= 0')
        if normalize:
            top = float(costs.max())
            if top == 0:
                raise ValueError(f'every cost in {source} is 0: nothing to '
                                 f'trade accuracy against')
            costs = costs / top
        self.costs = costs
        self.weight = float(weight)
        self.source = source

    @classmethod
    def build(cls, cfg: Optional[Mapping]) -> Optional['ArchCost']:
        """From ``DARTSSearch(arch_cost=dict(file=PATH, weight=lambda,
        normalize=True))``; None stays None (no penalty)."""
        if cfg is None:
            return None
        if not isinstance(cfg, Mapping) or 'file' not in cfg or \
                'weight' not in cfg or set(cfg) - {'file', 'weight',
                                                   'normalize'}:
            raise ValueError(f'arch_cost must be dict(file=<costs JSON from '
                             f'tools/analysis/op_costs.py>, weight=<lambda>'
                             f'[, normalize=True]), got {cfg!r}')
        normalize = cfg.get('normalize', True)
        if not isinstance(normalize, bool):
            raise ValueError(f'arch_cost normalize must be True or False, '
                             f'got {normalize!r}')
        path = cfg['file']
        if not isinstance(path, str):
            raise ValueError(f'arch_cost file must be a path, got {path!r}')
        return cls(load_costs(path), cfg['weight'], normalize, source=path)

    def penalty(self, alphas: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``lambda * expected_cost(alphas)`` and its gradient in alpha.

        Taken on a detached copy with ``torch.autograd.grad``: no ``.grad``
        is left anywhere.

        Args:
            alphas: (6, 7).

        Returns:
            (the penalty, detached scalar; its gradient (6, 7), like
            ``alphas``).
        """
        a = alphas.detach().double().requires_grad_()
        value = self.weight * expected_cost(a, self.costs.to(a.device))
        (grad, ) = torch.autograd.grad(value, [a])
        return value.detach().to(alphas.dtype), grad.to(alphas.dtype)

    def cheapest(self):
        """Column of the cheapest operation of each edge (first on ties)."""
        return self.costs.argmin(dim=1).tolist()

    def __repr__(self):
        return f'ArchCost(weight={self.weight:g}, source={self.source!r})'
