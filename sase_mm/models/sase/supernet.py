"""The SASE supernet: the searchable block and its one architecture weight.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333); DARTS: Differentiable Architecture Search (Liu et al.,
ICLR 2019). Every edge of the block's DAG is a mixed operation,
``sum_o softmax(alpha_e)_o * op_o(x)``, over the seven operations of its set
(no 'none', no 'skip'). The mixing weights ``mix = softmax(alpha)`` are
passed in explicitly (``block(x, mix)``, DARTS's ``cell(s0, s1, weights)``);
called as a plain plugin (``block(x)``) the block takes the softmax of the
shared alpha itself.

This module also owns the alpha. The search finds one block design for the
whole network, so all ``SASESearch`` blocks of a network read one (6, 7)
alpha (docs/spec.md section 3), registered exactly once in the state_dict:

* explicit (the search model): the owner creates the parameter with
  :func:`init_alphas` and passes it to each block, which keeps a reference
  that is not registered;
* implicit (a block built as an mmdet/mmpretrain plugin, where mmcv hands a
  plugin nothing but ``in_channels``): the first block built while a model
  is under construction creates and registers the alpha, and every later
  block of the same model reuses it. "The same model" is the outermost
  ``nn.Module`` whose ``__init__`` is on the call stack, so two models built
  one after the other get separate alphas.
"""
import inspect
import weakref
from typing import Optional

import torch
import torch.nn as nn

from ..layers.registration import register_model
from ..layers.statistics import FeatureStats
from .dag import SpatialMixer, sase_dag
from .fast.batched_edges import batched_mixture, weighted_sum
from .genotype import Genotype, GenotypeLike
from .space import EDGES, NUM_EDGES, NUM_OPS, OpSet


# --------------------------------------------------------------------------
# The architecture weights: one alpha per network, one owner.
# --------------------------------------------------------------------------
ALPHA_INIT_STD = 1e-3

# Outermost module under construction -> the alpha its blocks share.
_SHARED: 'weakref.WeakKeyDictionary[nn.Module, nn.Parameter]' = \
    weakref.WeakKeyDictionary()


def init_alphas(std: float = ALPHA_INIT_STD) -> nn.Parameter:
    """A new (6, 7) alpha, ``std * N(0, 1)`` (1e-3 in the paper)."""
    return nn.Parameter(std * torch.randn(NUM_EDGES, NUM_OPS))


def _outermost_module_under_construction(skip: nn.Module):
    frame = inspect.currentframe()
    outermost = None
    try:
        while frame is not None:
            if frame.f_code.co_name == '__init__':
                obj = frame.f_locals.get('self')
                if isinstance(obj, nn.Module) and obj is not skip:
                    outermost = obj
            frame = frame.f_back
    finally:
        del frame
    return outermost


def shared_alphas_for(block: nn.Module):
    """Returns ``(alpha, is_owner)`` for a block built without an explicit alpha."""
    model = _outermost_module_under_construction(block)
    if model is None:
        return init_alphas(), True
    alpha = _SHARED.get(model)
    if alpha is None:
        alpha = _SHARED[model] = init_alphas()
        return alpha, True
    return alpha, False


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

    def forward(self, x: torch.Tensor, weights: torch.Tensor,
                stats: Optional[FeatureStats] = None) -> torch.Tensor:
        """x: the edge input; weights: (7,) mixing weights."""
        ops = list(self.ops.values())
        if self._batched is not None:
            return self._batched(ops, x, weights)
        return weighted_sum([op(x, stats) for op in ops], weights)


@register_model
class SASESearch(nn.Module):
    """The searchable SASE block: six mixed edges and the spatial mixer.

    Args:
        in_channels (int): C of the input (B, C, H, W).
        spatial_size (int | tuple, optional): the feature size the block will
            see, for the per-position parameters of spatial L2-norm and
            spatial affine (resized when the input differs). Default 7x7.
        alphas (nn.Parameter, optional): a (6, 7) architecture weight owned
            elsewhere (e.g. by the search model); kept as an unregistered
            reference. When omitted, the blocks of one model share one alpha
            owned by the first of them (see ``arch_params``).
        fc_sigmoid (bool): sigmoid after the FC excitation (paper); default
            False (reference).
    """
    _abbr_ = 'sase_search'  # mmcv plugin naming
    searchable = True  # reads the network's shared alpha (is_searchable)

    def __init__(self, in_channels: int, spatial_size=None,
                 alphas: Optional[nn.Parameter] = None,
                 fc_sigmoid: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.spatial_size = spatial_size
        self.fc_sigmoid = fc_sigmoid
        self.edges = nn.ModuleList(
            MixedOp(e.op_set, in_channels, spatial_size,
                    fc_sigmoid=fc_sigmoid) for e in EDGES)
        self.mixer = SpatialMixer(affine=False)
        owner = False
        if alphas is None:
            alphas, owner = shared_alphas_for(self)
        if tuple(alphas.shape) != (NUM_EDGES, NUM_OPS):
            raise ValueError(f'alphas must be ({NUM_EDGES}, {NUM_OPS}), got '
                             f'{tuple(alphas.shape)}')
        if owner:
            self.alphas = alphas
        else:
            self._alpha_ref = (alphas, )  # a tuple is not registered

    @property
    def arch_alphas(self) -> nn.Parameter:
        """The shared (6, 7) alpha, whoever owns it."""
        return self.alphas if 'alphas' in self._parameters else \
            self._alpha_ref[0]

    @property
    def owns_alphas(self) -> bool:
        return 'alphas' in self._parameters

    def forward(self, x: torch.Tensor,
                weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, C, H, W); weights: (6, 7) mixing weights, default
        softmax(alphas). Returns (B, C, H, W)."""
        if weights is None:
            weights = self.arch_alphas.softmax(dim=-1)
        return sase_dag(x, lambda i, inp, st: self.edges[i](inp, weights[i],
                                                             st), self.mixer)

    def genotype(self) -> Genotype:
        """argmax of each alpha row."""
        return Genotype.from_alphas(self.arch_alphas)

    def derive(self, genotype: GenotypeLike = 'alphas') -> nn.Module:
        """The fixed :class:`SASE` block for ``genotype`` (default: argmax),
        carrying over the chosen operations' weights and the mixer's."""
        from .block import SASE
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
