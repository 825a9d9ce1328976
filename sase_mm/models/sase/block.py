"""SASE: the fixed (derived) squeeze-and-excitation block.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333). One operation per edge of the DAG, chosen by a genotype
(default: the paper's searched block, docs/spec.md section 4), built from the
same operation classes as the search. As an mmcv plugin it needs nothing but
``in_channels``: ``dict(type='sase_mm.SASE')`` at ``position='after_conv3'``
of an mmdet ResNet.
"""
import json

import torch
import torch.nn as nn

from ..layers.dims import to_size
from ..layers.precision import in_float32, state_is_cast
from ..layers.registration import register_model
from .dag import SpatialMixer, sase_dag
from .fast.batched_edges import (BATCHED_SETS, chain_gate, chain_kernels,
                                  plan_edge)
from .fast.fused import fusable, fused_sase, fused_sase_op
from .fast.fused.op import register_block
from .fast.fused.spatial import fused_spatial_map
from .fast.map_conv import compiled_applies
from .genotype import Genotype, GenotypeLike
from .space import EDGES


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


#: The fields of :meth:`SASE.op_config`, as (check, what is valid). The
#: text :meth:`SASE.from_op_config` reads comes from a file (the block key
#: of an exported program): it is parsed and checked, never handed over as
#: it stands (a genotype string, for one, would be read as a path).
_OP_CONFIG_FIELDS = {
    'in_channels': (_positive_int, 'a positive int'),
    'genotype': (lambda v: isinstance(v, list) and all(
        isinstance(o, str) for o in v), 'a list of operation names'),
    'spatial_size': (lambda v: isinstance(v, list) and len(v) == 2 and all(
        _positive_int(n) for n in v), '[H, W] of positive ints'),
    'fc_sigmoid': (lambda v: isinstance(v, bool), 'true or false'),
}


@register_model
@register_block
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
            False always runs the generic graph, and so does a
            half-precision block (``.half()``). Either way, on CPU, a
            convolution-chain excitation runs as the compiled
            ``chain_gate`` kernels (``fast/map_conv.py``), and in the fused
            node the mixer and E5 as one node (``fast/fused/spatial.py``).

    State-dict keys: ``edges.<i>.<param>`` for the chosen operation of edge i,
    ``mixer.0.weight`` and ``mixer.1.*`` for the spatial mixer.

    The operator form (``fast/fused/op.py``) names the block by
    :meth:`op_config` and rebuilds it, where it is not alive, by
    :meth:`from_op_config`; the class registers itself there.
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
        # Edges whose operation is a convolution chain (pure data, as the
        # search's batched edges plan it): where the compiled kernels
        # apply, it runs as one node of them (same values).
        self._chain_plans = {}
        for i, (e, op) in enumerate(zip(EDGES, self.edges)):
            if e.op_set.name in BATCHED_SETS:
                plan = plan_edge(e.op_set.name, [op])
                if plan.chains:
                    self._chain_plans[i] = plan
        # Kept at build time: the operator's key reads it at trace time.
        self._op_config = dict(  # JSON: plain ints, lists, strings
            in_channels=int(in_channels), genotype=list(self.genotype),
            spatial_size=list(to_size(spatial_size)),
            fc_sigmoid=bool(fc_sigmoid))

    def op_config(self) -> dict:
        """The constructor arguments that determine the block's
        computation, as JSON-able values (:data:`_OP_CONFIG_FIELDS`);
        ``fused`` is not one (the operator is the fused form)."""
        return dict(self._op_config)

    @classmethod
    def from_op_config(cls, text: str) -> 'SASE':
        """The block of ``json.dumps(block.op_config())``, built unfused.

        ``text`` is read from a file: it is parsed and checked field by
        field before anything is built.

        Raises:
            ValueError: not a JSON object of exactly the fields of
                :data:`_OP_CONFIG_FIELDS`, or a field that is not what it
                must be (or, from the constructor, an unknown operation).
        """
        where = (f'sase_mm::fused_sase: the block key\'s {cls.__name__} '
                 f'configuration')
        try:
            kwargs = json.loads(text)
        except ValueError as e:
            raise ValueError(f'{where} is not JSON ({e})') from None
        fields = _OP_CONFIG_FIELDS
        if not isinstance(kwargs, dict) or set(kwargs) != set(fields):
            got = (sorted(kwargs) if isinstance(kwargs, dict) else
                   type(kwargs).__name__)
            raise ValueError(f'{where} must be a JSON object with exactly '
                             f'the fields {sorted(fields)}, got {got}')
        for name, (ok, valid) in fields.items():
            if not ok(kwargs[name]):
                raise ValueError(f'{where}: {name} must be {valid}, got '
                                 f'{kwargs[name]!r:.80}')
        return cls(**kwargs, fused=False)

    def edge_fn(self, i: int, inp, stats):
        """Edge i's operation on its input (and the input's statistics); a
        convolution chain through the compiled ``chain_gate`` kernels where
        they apply (``fast/map_conv.py``)."""
        plan = self._chain_plans.get(i)
        if plan is not None and compiled_applies(inp):
            return chain_gate(plan, [self.edges[i]], inp)
        return self.edges[i](inp, stats)

    def spatial_map(self, e3: torch.Tensor,
                    e4: torch.Tensor) -> torch.Tensor:
        """The spatial map ``E5(mixer(e3, e4))`` (B, 1, H, W) from E3's and
        E4's maps: the mixer (and E5, a convolution chain) as one node of
        compiled kernels where they apply (``fast/fused/spatial.py``), else
        the mixer module and edge 5."""
        plan = self._chain_plans.get(5)
        kernels = () if plan is None else chain_kernels(plan,
                                                         [self.edges[5]])
        s = fused_spatial_map(self.mixer, e3, e4, kernels)
        if s is None:
            return self.edge_fn(5, self.mixer(e3, e4), None)
        return s if plan is not None else self.edge_fn(5, s, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W), in x's dtype. Under autocast or
        for half-precision x the block runs in float32 (``in_float32``),
        fused or generic alike; a half-precision block (``.half()``,
        ``.to(torch.bfloat16)``) runs on float32 casts of its parameters,
        through the generic graph."""
        return in_float32(self._forward, x, self)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        # The fused node keeps the block from its forward to its backward
        # (a retained graph's second backward and a double backward
        # recompute through the block's parameters), so it needs the
        # block's own parameters: a half-precision block, whose parameters
        # are float32 casts only for this call, runs the generic graph.
        if (self.fused and torch.is_grad_enabled() and x.dim() == 4
                and not torch.jit.is_tracing()
                and (x.requires_grad
                     or any(p.requires_grad for p in self.parameters()))
                and not state_is_cast(self)):
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
