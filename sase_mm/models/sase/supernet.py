"""The SASE supernet: the searchable block and the ownership of its alpha.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333); DARTS: Differentiable Architecture Search (Liu et al.,
ICLR 2019). Every edge of the block's DAG is a mixed operation,
``sum_o softmax(alpha_e)_o * op_o(x)``, over the seven operations of its set
(no 'none', no 'skip'). The mixing weights ``mix = softmax(alpha)`` are
passed in explicitly (``block(x, mix)``, DARTS's ``cell(s0, s1, weights)``);
called as a plain plugin (``block(x)``) the block takes ``self.mix()``, the
softmax of the shared alpha, itself.

This module is also the one home of the alpha. The search finds one block
design for the whole network, so all ``SASESearch`` blocks of a network read
one (6, 7) alpha (docs/spec.md section 3), created here (:func:`init_alphas`
has one caller, :func:`_new_shared_alphas`) and registered exactly once in
the state_dict:

* an owner model (``DARTSSearch``, ``CifarResNet``, ``SASEResNet``) calls
  :func:`claim_alphas` at the start of its ``__init__``, before it builds
  any layer, and registers the new alpha as its ``alphas`` parameter (so
  the alpha is the first draw of the random stream, and the owner's ``std``
  applies);
* a block built without an explicit alpha (a block of an owner model, or an
  mmdet/mmpretrain plugin, where mmcv hands a plugin nothing but
  ``in_channels``) calls :func:`shared_alphas_for`: it joins the alpha of
  the innermost model under construction that has one, or, if none has,
  creates it and registers it on itself (the first plugin of a model, or a
  standalone block);
* a block given ``alphas`` explicitly keeps an unregistered reference;
* an owner built inside another model that already has an alpha (e.g. a
  ``SASEResNet`` backbone of a detector that ``DARTSSearch`` builds) claims
  none (:func:`enclosing_alphas`): its blocks join the outer one, so the
  search model stays the alpha's single owner.

"Under construction" is read from the call stack: the modules whose
``__init__`` is running. A plugin's new alpha is keyed by the outermost of
them, so every later plugin of that model joins it, while two models built
one after the other (or two owners built side by side) get separate alphas.
"""
import inspect
import weakref
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

from ..layers.registration import register_model
from ..layers.statistics import FeatureStats, in_float32
from .dag import SpatialMixer, sase_dag
from .fast.batched_edges import batched_mixture, weighted_sum
from .genotype import Genotype, GenotypeLike
from .mixing import bound_mix
from .space import EDGES, NUM_EDGES, NUM_OPS, OpSet


# --------------------------------------------------------------------------
# The architecture weights: one alpha per network, one owner.
# --------------------------------------------------------------------------
ALPHA_INIT_STD = 1e-3

# Module under construction (an owner, or the outermost model of a plugin)
# -> the alpha its searchable blocks share. Weak keys: an entry goes with its
# model.
_SHARED: 'weakref.WeakKeyDictionary[nn.Module, nn.Parameter]' = \
    weakref.WeakKeyDictionary()
# The keys of _SHARED that claimed their alpha as owners (claim_alphas), not
# the outermost model of a loose plug-in block.
_OWNERS: 'weakref.WeakSet[nn.Module]' = weakref.WeakSet()


def init_alphas(std: float = ALPHA_INIT_STD) -> nn.Parameter:
    """A new (6, 7) alpha, ``std * N(0, 1)`` (1e-3 in the paper).

    In the package only :func:`_new_shared_alphas` calls it (one owner per
    network); tests and benchmarks call it for a free-standing alpha.
    """
    return nn.Parameter(std * torch.randn(NUM_EDGES, NUM_OPS))


def _modules_under_construction() -> List[nn.Module]:
    """The modules whose ``__init__`` is on the call stack, outermost first."""
    frame = inspect.currentframe()
    found = []
    try:
        while frame is not None:
            if frame.f_code.co_name == '__init__':
                obj = frame.f_locals.get('self')
                if isinstance(obj, nn.Module) and not any(
                        obj is m for m in found):
                    found.append(obj)
            frame = frame.f_back
    finally:
        del frame
    return found[::-1]


def _new_shared_alphas(key: nn.Module, std: float) -> nn.Parameter:
    alpha = init_alphas(std)  # the one place an alpha is created
    _SHARED[key] = alpha
    return alpha


def claim_alphas(owner: nn.Module,
                 std: float = ALPHA_INIT_STD) -> nn.Parameter:
    """A new alpha for an owner model, which must register it.

    Call it at the start of the owner's ``__init__``, before any layer is
    built (``owner`` may not have run ``nn.Module.__init__`` yet); the
    blocks built during the rest of that ``__init__`` without an explicit
    alpha join it (:func:`shared_alphas_for`).

    Args:
        owner (nn.Module): the model whose ``__init__`` is running.
        std (float): the init std, ``std * N(0, 1)``.

    Returns:
        nn.Parameter: the (6, 7) alpha, for ``owner.alphas``.
    """
    _OWNERS.add(owner)
    return _new_shared_alphas(owner, std)


def enclosing_alphas() -> Optional[nn.Parameter]:
    """The alpha claimed (:func:`claim_alphas`) by the innermost owner
    under construction, e.g. ``DARTSSearch``, or None. The ad-hoc alpha of
    loose plug-in blocks in a plain module does not count.

    An owner model asks this before :func:`claim_alphas`: when an outer
    model owns an alpha, the owner claims none and its blocks join the
    outer alpha.
    """
    for model in reversed(_modules_under_construction()):
        if model in _OWNERS:
            return _SHARED[model]
    return None


def shared_alphas_for(block: nn.Module) -> Tuple[nn.Parameter, bool]:
    """``(alpha, first)`` for a block built without an explicit alpha.

    The block joins the alpha of the innermost model under construction
    that has one. If none has, a new alpha is created, keyed by the
    outermost module under construction (the block itself when built
    alone), and ``first`` says that the block must register it.
    """
    building = _modules_under_construction()
    for model in reversed(building):  # innermost first: an owner's own
        alpha = _SHARED.get(model)
        if alpha is not None:
            return alpha, False
    return _new_shared_alphas(building[0] if building else block,
                              ALPHA_INIT_STD), True


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

    def forward(self, x: torch.Tensor, mix: torch.Tensor,
                stats: Optional[FeatureStats] = None) -> torch.Tensor:
        """x: the edge input; mix: (7,) mixing weights."""
        ops = list(self.ops.values())
        if self._batched is not None:
            return self._batched(ops, x, mix)
        return weighted_sum([op(x, stats) for op in ops], mix)


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
            reference. When omitted, the block joins the alpha of the model
            under construction (module docstring: claimed by an owner model,
            or registered on the first plugin block of a model).
        fc_sigmoid (bool): sigmoid after the FC excitation (paper); default
            False (reference).
    """
    _abbr_ = 'sase_search'  # mmcv plugin naming
    # is_searchable: reads the network's shared alpha and exposes
    # arch_alphas, mix() and genotype().
    searchable = True

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
        first = False
        if alphas is None:
            alphas, first = shared_alphas_for(self)
        if tuple(alphas.shape) != (NUM_EDGES, NUM_OPS):
            raise ValueError(f'alphas must be ({NUM_EDGES}, {NUM_OPS}), got '
                             f'{tuple(alphas.shape)}')
        if first:
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
        """Whether the alpha is registered here (``alphas`` key)."""
        return 'alphas' in self._parameters

    def mix(self) -> torch.Tensor:
        """The mixing weights softmax(alpha) over each edge's operations,
        (6, 7)."""
        return self.arch_alphas.softmax(dim=-1)

    def forward(self, x: torch.Tensor,
                mix: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, C, H, W); mix: (6, 7) mixing weights, default: those
        bound to this block's alpha by the pass (``mixing``: a search model
        around an mm classifier or detector), else ``self.mix()``. Returns
        (B, C, H, W)."""
        if mix is None:
            mix = bound_mix(self.arch_alphas)
        if mix is None:
            mix = self.mix()
        # >>> mixed precision (issue 10): statistics in float32
        return in_float32(lambda t: sase_dag(
            t, lambda i, inp, st: self.edges[i](inp, mix[i], st),
            self.mixer), x)
        # <<< mixed precision

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
