"""SASE: the fixed (derived) squeeze-and-excitation block.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333). One operation per edge of the DAG, chosen by a genotype
(default: the paper's searched block, docs/spec.md section 4), built from the
same operation classes as the search. As an mmcv plugin it needs nothing but
``in_channels``: ``dict(type='sase_mm.SASE')`` at ``position='after_conv3'``
of an mmdet ResNet.
"""
import torch
import torch.nn as nn

from ..layers.dims import to_size
from ..layers.registration import register_model
from ..layers.statistics import in_float32
from .dag import SpatialMixer, sase_dag
from .fast.fused import fusable, fused_sase, fused_sase_op
from .genotype import Genotype, GenotypeLike
from .space import EDGES


@register_model
class SASE(nn.Module):
    """The derived SASE attention block.

    Args:
        in_channels (int): C of the input (B, C, H, W).
        genotype: six operations in any form :meth:`Genotype.parse` reads
            (default: the paper's, ``'sase_paper'``).
        spatial_size (int | tuple, optional): build-time size of per-position
            parameters (only spatial L2-norm / affine have them).
        fc_sigmoid (bool): sigmoid after the FC excitation (paper's form);
            default False (reference code, whose checkpoints load unchanged).
        fused (bool): when training, run the block as one autograd node with
            a closed-form input gradient (``fast/fused/``; same values, less
            memory traffic) if its genotype allows; default True. Under
            ``torch.compile`` / ``torch.export`` the same computation runs
            as one operator, ``sase_mm::fused_sase`` (``fast/fused/op.py``).
            False always runs the generic graph.

    State-dict keys: ``edges.<i>.<param>`` for the chosen operation of edge i,
    ``mixer.0.weight`` and ``mixer.1.*`` for the spatial mixer.
    """
    _abbr_ = 'sase'  # mmcv plugin naming

    def __init__(self, in_channels: int, genotype: GenotypeLike = None,
                 spatial_size=None, fc_sigmoid: bool = False,
                 fused: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.genotype = Genotype.parse(genotype)
        self.fused = fused and fusable(self.genotype)
        self.edges = nn.ModuleList(
            e.op_set.build(op, in_channels, spatial_size,
                           fc_sigmoid=fc_sigmoid)
            for e, op in zip(EDGES, self.genotype))
        self.mixer = SpatialMixer(affine=True)
        # What the operator form needs to rebuild the block where it is not
        # alive (an exported program loaded elsewhere): fast/fused/op.py.
        self._op_config = dict(  # JSON: plain ints, lists, strings
            in_channels=int(in_channels), genotype=list(self.genotype),
            spatial_size=list(to_size(spatial_size)),
            fc_sigmoid=bool(fc_sigmoid))

    def edge_fn(self, i: int, inp, stats):
        """Edge i's operation on its input (and the input's statistics)."""
        return self.edges[i](inp, stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W), in x's dtype. Under autocast or
        for half-precision x the block runs in float32 (``in_float32``),
        fused or generic alike."""
        return in_float32(self._forward, x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.fused and torch.is_grad_enabled() and x.dim() == 4
                and not torch.jit.is_tracing()
                and (x.requires_grad
                     or any(p.requires_grad for p in self.parameters()))):
            if torch.compiler.is_compiling():  # compile / export: one op
                return fused_sase_op(self, x)
            # Eager: the autograd node, which keeps its tape for backward
            # (the operator recomputes it).
            return fused_sase(self, x)
        return self.forward_generic(x)

    def forward_generic(self, x: torch.Tensor) -> torch.Tensor:
        """The block through plain autograd (what the fused node equals)."""
        return sase_dag(x, self.edge_fn, self.mixer)

    def extra_repr(self):
        return (f'in_channels={self.in_channels}, genotype={self.genotype}, '
                f'fused={self.fused}')
