"""The SASE supernet: the searchable block.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333); DARTS: Differentiable Architecture Search (Liu et al.,
ICLR 2019). Every edge of the block's DAG is a mixed operation,
``sum_o softmax(alpha_e)_o * op_o(x)``, over the seven operations of its set
(no 'none', no 'skip'). The block reads the network's one (6, 7) alpha
(``alphas.py``: its own until a network binds its shared one) and takes its
mixing weights from ``mixing.current_mix``: those the search model binds for
the pass, else the softmax of the alpha.

The squeeze edges read their statistics from :class:`MomentStats`, told
what the block's squeeze operations read (``MixedOp.reads``): all the
statistics of a map over some dims come from one node.
"""
import functools
from typing import FrozenSet, Optional

import torch
import torch.nn as nn

from ..layers.feature_stats import FeatureStats, MomentStats
from ..layers.precision import HALF_DTYPES, in_float32
from ..layers.reads import Read
from ..layers.registration import register_model
from .alphas import AlphaHolder, init_alphas
from .block import SASE
from .dag import SpatialMixer, sase_dag
from .fast.batched_edges import batched_mixture, weighted_sum
from .genotype import Genotype, GenotypeLike
from .mixing import current_mix, softmax_mix
from .space import EDGES, OpSet


class MixedOp(nn.Module):
    """All operations of one set on one input, mixed by a weight vector.

    The candidates of one edge read the same :class:`FeatureStats`, so shared
    statistics (means, maxima, centred moments) are computed once. Sets with
    a batched evaluator (``batched_edges``) run the seven operations as a
    few stacked products; the others run them one by one and mix them with
    one product. State-dict keys: ``ops.<op name>.<param>``.
    """

    def __init__(self, op_set: OpSet, channels: int, spatial_size=None,
                 **options):
        super().__init__()
        self.ops = nn.ModuleDict(
            (name, op_set.build(name, channels, spatial_size, **options))
            for name in op_set.names)
        self._batched = batched_mixture(op_set.name, list(self.ops.values()))

    def reads(self) -> FrozenSet[Read]:
        """What the edge's operations read from a :class:`FeatureStats`
        (the union of their ``reads()``; empty for the excitations, which
        read none)."""
        return frozenset().union(*(op.reads() for op in self.ops.values()
                                   if callable(getattr(op, 'reads', None))))

    def forward(self, x: torch.Tensor, mix: torch.Tensor,
                stats: Optional[FeatureStats] = None) -> torch.Tensor:
        """x: the edge input; mix: (7,) mixing weights."""
        ops = list(self.ops.values())
        if self._batched is not None:
            return self._batched(ops, x, mix)
        return weighted_sum([op(x, stats) for op in ops], mix)


@register_model
class SASESearch(AlphaHolder, nn.Module):
    """The searchable SASE block: six mixed edges and the spatial mixer.

    Args:
        in_channels (int): C of the input (B, C, H, W).
        spatial_size (int | tuple, optional): the feature size the block will
            see, for the per-position parameters of spatial L2-norm and
            spatial affine (resized when the input differs). Default 7x7.
        fc_sigmoid (bool): sigmoid after the FC excitation (paper); default
            False (reference).

    The block starts with its own (6, 7) alpha, registered as ``alphas``;
    a network binds its one shared alpha to all its blocks after building
    them (``alphas.bind_alphas``), and the block then reads that one.
    """
    _abbr_ = 'sase_search'  # mmcv plugin naming
    reads_alphas = True

    def __init__(self, in_channels: int, spatial_size=None,
                 fc_sigmoid: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.spatial_size = spatial_size
        self.fc_sigmoid = fc_sigmoid
        self.edges = nn.ModuleList(
            MixedOp(e.op_set, in_channels, spatial_size,
                    fc_sigmoid=fc_sigmoid) for e in EDGES)
        self.mixer = SpatialMixer(affine=False)
        self.alphas = init_alphas()
        # What the squeeze edges read: each map's statistics over some dims
        # come from one node (MomentStats).
        reads = frozenset().union(*(e.reads() for e in self.edges))
        self._stats = functools.partial(MomentStats, reads=reads)
        self._gated = functools.partial(MomentStats.gated, reads=reads)

    def mix(self) -> torch.Tensor:
        """The mixing weights softmax(alpha) over each edge's operations,
        (6, 7)."""
        return softmax_mix(self.arch_alphas)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W), mixed by ``current_mix`` of the
        alpha the block reads (the pass's binding, else softmax(alpha)).
        The statistics are computed in float32 (``in_float32``); a
        half-precision block runs on float32 casts of its parameters and of
        its mixing weights."""
        mix = current_mix(self.arch_alphas)

        def block(t: torch.Tensor) -> torch.Tensor:
            # A pass may bind the mix of a half-precision alpha.
            m = mix.float() if mix.dtype in HALF_DTYPES else mix
            return sase_dag(
                t, lambda i, inp, st: self.edges[i](inp, m[i], st),
                self.mixer, self._stats, self._gated)

        return in_float32(block, x, self)

    def genotype(self) -> Genotype:
        """argmax of each alpha row."""
        return Genotype.from_alphas(self.arch_alphas)

    def derive(self, genotype: GenotypeLike = 'alphas') -> nn.Module:
        """The fixed :class:`SASE` block for ``genotype`` (default: argmax),
        carrying over the chosen operations' weights and the mixer's."""
        g = self.genotype() if genotype == 'alphas' else Genotype.parse(
            genotype)
        block = SASE(self.in_channels, genotype=g,
                     spatial_size=self.spatial_size,
                     fc_sigmoid=self.fc_sigmoid)
        block.to(next(self.parameters()).device)
        for i, op in enumerate(g):
            block.edges[i].load_state_dict(self.edges[i].ops[op].state_dict())
        # Affine-free BN in search: the derived BN starts at weight 1, bias 0.
        block.mixer.load_state_dict(self.mixer.state_dict(), strict=False)
        return block

    def extra_repr(self):
        return (f'in_channels={self.in_channels}, '
                f'owns_alphas={self.owns_alphas}')
