"""The SASE search space: the four ordered operation sets and the six edges.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333). Each set is declared once, as an ordered mapping from a
readable name to (reference spelling, factory), DARTS's ``OPS`` dict: the
order is the column order of the architecture weights alpha, and both the
searchable and the fixed block build their operations from here.

A factory is called as ``factory(channels, spatial_size, **options)``; the
options understood are ``fc_sigmoid`` (bool, the paper's sigmoid after the FC
excitation; default off as in the reference).
"""
from collections import OrderedDict
from typing import Callable, Dict, NamedTuple, Tuple

import torch.nn as nn

from ..layers.dims import C_DIMS, HW_DIMS
from ..layers.excitation import (ChannelAffine, Conv1dChain, FCExcitation,
                                 SpatialAffine, SpatialConv)
from ..layers.squeeze import (ChannelCovPool, ChannelL2Norm, LpPool,
                              MeanPool, PairPool, SpatialCovPool,
                              SpatialL2Norm)


class OpSpec(NamedTuple):
    ref: str  # the reference implementation's spelling
    factory: Callable[..., nn.Module]


class OpSet:
    """An ordered, named set of candidate operations.

    Args:
        name (str): the set's name, e.g. ``'channel_squeeze'``.
        ops (OrderedDict[str, OpSpec]): readable name -> spec, in column order.
    """

    def __init__(self, name: str, ops: 'OrderedDict[str, OpSpec]'):
        self.name = name
        self.ops = ops
        self._lookup: Dict[str, str] = {}
        for key, spec in ops.items():
            self._lookup[key] = key
            self._lookup[spec.ref] = key

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(self.ops)

    @property
    def ref_names(self) -> Tuple[str, ...]:
        return tuple(spec.ref for spec in self.ops.values())

    def __len__(self) -> int:
        return len(self.ops)

    def __contains__(self, name) -> bool:
        return name in self._lookup

    def canonical(self, name: str) -> str:
        """The readable name for ``name`` (readable or reference spelling).

        Raises:
            KeyError: with the valid names, when ``name`` is not in the set.
        """
        try:
            return self._lookup[name]
        except (KeyError, TypeError):
            valid = ', '.join(f"'{n}' ['{s.ref}']"
                              for n, s in self.ops.items())
            raise KeyError(f'unknown {self.name} operation {name!r}; valid '
                           f'names (reference spelling in brackets): '
                           f'{valid}') from None

    def index(self, name: str) -> int:
        """Column of ``name`` in the architecture weights."""
        return self.names.index(self.canonical(name))

    def build(self, name: str, channels: int, spatial_size=None,
              **options) -> nn.Module:
        """Instantiates operation ``name`` for ``channels`` input channels."""
        return self.ops[self.canonical(name)].factory(channels, spatial_size,
                                                      **options)

    def __repr__(self):
        return f'OpSet({self.name!r}, {list(self.names)})'


def _set(name, *entries):
    return OpSet(name,
                 OrderedDict((n, OpSpec(ref, f)) for n, ref, f in entries))


def _squeeze_set(name, dims, l2_norm, cov_pool):
    return _set(
        name,
        ('gap', 'GAP', lambda c, s, **kw: MeanPool(dims)),
        ('l2_norm', 'L2-norm', l2_norm),
        ('l4_pool', 'p-norm', lambda c, s, **kw: LpPool(dims, p=4)),
        ('gap_gmp', 'GAP+GMP', lambda c, s, **kw: PairPool(dims, 'max')),
        ('gap_std', 'GAP+std', lambda c, s, **kw: PairPool(dims, 'std')),
        ('gap_skew', 'SkewPooling',
         lambda c, s, **kw: PairPool(dims, 'skew')),
        ('cov_pool', '2nd-order pooling', cov_pool),
    )


CHANNEL_SQUEEZE = _squeeze_set(
    'channel_squeeze', HW_DIMS,
    l2_norm=lambda c, s, **kw: ChannelL2Norm(c),
    cov_pool=lambda c, s, **kw: ChannelCovPool(c))

SPATIAL_SQUEEZE = _squeeze_set(
    'spatial_squeeze', C_DIMS,
    l2_norm=lambda c, s, **kw: SpatialL2Norm(s),
    cov_pool=lambda c, s, **kw: SpatialCovPool())

CHANNEL_EXCITATION = _set(
    'channel_excitation',
    ('conv1d_k3_x3', '3conv1D_3', lambda c, s, **kw: Conv1dChain(3, 3)),
    ('fc', '2conv_1x1', lambda c, s, fc_sigmoid=False, **kw: FCExcitation(
        c, 16, sigmoid=fc_sigmoid)),
    ('conv1d_k3', 'conv1D_3', lambda c, s, **kw: Conv1dChain(3)),
    ('conv1d_k5', 'conv1D_5', lambda c, s, **kw: Conv1dChain(5)),
    ('conv1d_k7', 'conv1D_7', lambda c, s, **kw: Conv1dChain(7)),
    ('conv1d_k3_x2', '2conv1D_3', lambda c, s, **kw: Conv1dChain(3, 2)),
    ('affine', 'affine', lambda c, s, **kw: ChannelAffine(c)),
)

SPATIAL_EXCITATION = _set(
    'spatial_excitation',
    ('sep_conv_3', 'conv_3x1_1x3',
     lambda c, s, **kw: SpatialConv([(1, 3), (3, 1)], relu_between=False)),
    ('sep_conv_5', 'conv_5x1_1x5',
     lambda c, s, **kw: SpatialConv([(1, 5), (5, 1)], relu_between=False)),
    ('conv_3x3', 'conv_3x3', lambda c, s, **kw: SpatialConv([(3, 3)])),
    ('conv_5x5', 'conv_5x5', lambda c, s, **kw: SpatialConv([(5, 5)])),
    ('conv_7x7', 'conv_7x7', lambda c, s, **kw: SpatialConv([(7, 7)])),
    ('conv_3x3_x2', '2conv_3x3',
     lambda c, s, **kw: SpatialConv([(3, 3), (3, 3)])),
    ('affine', 'affine', lambda c, s, **kw: SpatialAffine(s)),
)

OP_SETS: 'OrderedDict[str, OpSet]' = OrderedDict(
    (s.name, s) for s in (CHANNEL_SQUEEZE, CHANNEL_EXCITATION,
                          SPATIAL_SQUEEZE, SPATIAL_EXCITATION))


class Edge(NamedTuple):
    name: str
    op_set: OpSet
    description: str


# The DAG's six edges, in alpha row order (docs/spec.md section 1).
EDGES: Tuple[Edge, ...] = (
    Edge('channel_squeeze', CHANNEL_SQUEEZE, 'E0: s1 = E0(x)'),
    Edge('channel_map', CHANNEL_EXCITATION, 'E1: channel map s2 = E1(s1)'),
    Edge('channel_gate', CHANNEL_EXCITATION, 'E2: gate s3 = E2(s1) * x'),
    Edge('spatial_squeeze_gated', SPATIAL_SQUEEZE, 'E3: squeeze of s3'),
    Edge('spatial_squeeze_input', SPATIAL_SQUEEZE, 'E4: squeeze of x'),
    Edge('spatial_map', SPATIAL_EXCITATION, 'E5: spatial map s5 = E5(s4)'),
)
NUM_EDGES = len(EDGES)
NUM_OPS = len(CHANNEL_SQUEEZE)
assert all(len(e.op_set) == NUM_OPS for e in EDGES)
