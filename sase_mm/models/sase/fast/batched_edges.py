"""The candidates of one excitation search edge, evaluated together.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333); DARTS (Liu et al., ICLR 2019). During the search every
edge computes ``sum_o mix_o op_o(x)``, ``mix = softmax(alpha_e)``, over the
operations of its set (docs/spec.md section 3). On the CIFAR shapes the maps
are tiny (B x C values for a channel excitation), so running the operations
one by one costs mostly per-operator overhead: the ECA-style 1-D
convolutions of the channel excitation set alone are eight grouped
convolutions per edge, whose CPU kernels take about a millisecond each,
forward and backward, for a few thousand multiply-adds.

This module owns the batched restatement of the two excitation sets
(docs/spec.md sections 2.3 and 2.4); the plain version is ``MixedOp``
running the operations of ``layers/excitation.py`` one by one. The values
are theirs up to float rounding (sums taken in another order); the
parameters are the operations' own, so state-dict keys and ``derive()`` are
unchanged, and everything is plain autograd, so higher derivatives are
exact.

Nothing here restates the sets: the structure of an edge (an
:class:`EdgePlan`) is read off its operation objects, in whatever order and
number ``space.py`` declares them, and the sets that ``space.py`` declares
are checked when this module is imported (:func:`check_declared_sets`), so
an operation without a batched form fails loudly instead of switching the
fast path off.

A 1 -> 1 channel convolution (zero padding, no bias) is a product with a
constant-pattern matrix holding the kernel's taps (:func:`conv_matrix`;
banded Toeplitz for a 1-D one), so convolutions that read the same input
become one matrix product with their matrices side by side. The
convolution chains of an edge (``Conv1dChain`` over the (1, C) channel
sequence, ``SpatialConv`` on the (H, W) map) run layer by layer: the first
layers of all chains are one (n, k n) product, the second layers of the
chains that have one a block-diagonal product, and so on by depth. A chain
with no ReLU between convolutions whose kernels compose exactly (a
separable 1 x k then k x 1 pair) is one convolution with the product of
its kernels. This holds on maps of at most :data:`MAX_DENSE_CHANNELS`
channels or :data:`MAX_DENSE_POSITIONS` positions (the matrices grow as the
square of the map).

On larger maps the same layers run as convolutions of 1-channel maps
(:func:`map_conv`, ``map_conv.py``), planned alike: the first layers of
all chains as one convolution of the input with all their kernels
(1 -> k maps), each later layer as one depthwise convolution of the maps
of the chains that go on. On CPU these are compiled kernels, which also
beat the matrices above :data:`MAX_DENSE_WITH_KERNELS` entries; on a GPU
one ``conv2d`` each, the kernels zero-padded to the largest; on CPU
without the compiled kernels (where ``conv2d`` on 1-channel maps costs
more) the operations run one by one.

The sigmoids of an edge run as one, and the mixture is one batched
product of ``mix`` with the stacked gates (:func:`weighted_sum` for the
sets run operation by operation). A fixed block's convolution chain is a
one-chain plan (:func:`chain_gate`).
"""
import functools
from typing import (Callable, Dict, Iterable, List, Mapping, NamedTuple,
                    Optional, Sequence, Tuple)

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...layers.dims import resize_to
from ...layers.excitation import (ChannelAffine, Conv1dChain, FCExcitation,
                                  SpatialAffine, SpatialConv)
from ...layers.reference import apply
from ..space import OP_SETS
from .map_conv import compiled_applies, conv_chain_gate, map_conv

Size = Tuple[int, int]


class NotBatchable(TypeError):
    """An edge operation that the batched evaluator cannot represent."""


# --------------------------------------------------------------------------
# Convolutions as matrix products.
# --------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _conv_index(size: Size, kernel_sizes: Tuple[Size, ...],
                block_diagonal: bool, device: torch.device):
    """Where the kernels' taps go in the matrices of their convolutions.

    For 1 -> 1 channel kernels K_0, K_1, ... of sizes (kh, kw) (zero
    padding kh // 2, kw // 2, no bias) on an (H, W) map, the matrices M_j
    with ``x @ M_j = conv2d(x, K_j)`` for x flattened to (N, H W) have
    ``M_j[(hi, wi), (ho, wo)] = K_j[hi - ho + kh // 2, wi - wo + kw // 2]``
    inside the kernel's reach, zero elsewhere. They are laid side by side,
    (H W, n H W), when the convolutions share their input, and
    block-diagonally, (n H W, n H W), when convolution j reads columns
    j H W to (j + 1) H W (``block_diagonal``).

    Returns ``(positions, taps, shape)``: the flat positions of the nonzero
    entries and, for each, its index into the kernels flattened and
    concatenated.
    """
    h, w = size
    n = h * w
    ho = torch.arange(h).view(h, 1, 1, 1)
    wo = torch.arange(w).view(1, w, 1, 1)
    rows = n * len(kernel_sizes) if block_diagonal else n
    cols = n * len(kernel_sizes)
    positions, taps = [], []
    offset = 0
    for j, (kh, kw) in enumerate(kernel_sizes):
        i = torch.arange(kh).view(1, 1, kh, 1)
        k = torch.arange(kw).view(1, 1, 1, kw)
        hi, wi = ho + i - kh // 2, wo + k - kw // 2
        valid = ((hi >= 0) & (hi < h) & (wi >= 0) & (wi < w)).expand(
            h, w, kh, kw)
        row = (hi * w + wi + (j * n if block_diagonal else 0)).expand_as(
            valid)[valid]
        col = (j * n + ho * w + wo).expand_as(valid)[valid]
        positions.append(row * cols + col)
        taps.append((offset + i * kw + k).expand_as(valid)[valid])
        offset += kh * kw
    return (torch.cat(positions).to(device), torch.cat(taps).to(device),
            (rows, cols))


def conv_matrix(kernels: Sequence[torch.Tensor], size: Size,
                block_diagonal: bool = False) -> torch.Tensor:
    """The matrices of 1 -> 1 channel convolutions on an (H, W) map.

    Args:
        kernels: each (kh, kw) or any shape ending in it (a conv weight
            (1, 1, kh, kw)); a 1-D kernel (1, 1, k) acts on a (1, W) map.
        size: (H, W) of the map.
        block_diagonal: see :func:`_conv_index`.

    Returns:
        (H W, n H W) or (n H W, n H W): ``x.flatten(1) @ M`` is the n
        convolutions of x side by side. Only the nonzero entries are
        written (``index_copy``), and their gradient flows back to the
        kernels through ``index_select``'s (an ``index_add``).
    """
    # A Conv1d weight (1, 1, k) is a (1, k) kernel.
    sizes = tuple((1 if k.dim() in (1, 3) else int(k.shape[-2]),
                   int(k.shape[-1])) for k in kernels)
    flat = torch.cat([k.reshape(-1) for k in kernels])
    positions, taps, shape = _conv_index(tuple(size), sizes, block_diagonal,
                                         flat.device)
    dense = flat.new_zeros(shape[0] * shape[1])
    return dense.index_copy(0, positions, flat.index_select(0, taps)).view(
        shape)


def weighted_sum(outputs: List[torch.Tensor],
                 mix: torch.Tensor) -> torch.Tensor:
    """``sum_o mix[o] * outputs[o]`` as one stacked product.

    One matrix product (and its two in the backward pass) instead of seven
    multiplications, six additions and their thirteen autograd nodes.

    Args:
        outputs: n tensors of one shape.
        mix: (n, ) mixing weights.
    """
    first = outputs[0]
    stacked = torch.stack([o.reshape(-1) for o in outputs])
    return torch.matmul(mix, stacked).view(first.shape)


# --------------------------------------------------------------------------
# An edge's structure, read off its operations.
# --------------------------------------------------------------------------
# Above this many channels the (C, k C) matrices cost more than the grouped
# convolutions (and grow as C^2: 21M entries at C = 2048), so the
# operations run one by one (or as ``map_conv``s, where that is batched).
MAX_DENSE_CHANNELS = 256
# Above this many positions the (H W, k H W) matrices cost more than the
# grouped convolutions (at 32 x 32 six would hold 6.3M entries).
MAX_DENSE_POSITIONS = 256
# Where the compiled ``map_conv`` runs, it costs less than the matrices
# above this many map entries (batch 64, 2 CPU threads: 12 x 12 positions
# and 128 channels run faster as convolutions, 10 x 10 and 64 as matrices).
MAX_DENSE_WITH_KERNELS = 100


class _Chain(NamedTuple):
    """A chain of 1 -> 1 convolutions (ReLU between unless folded), then
    a sigmoid."""
    column: int  # of the operation in the edge (and of its mix weight)
    depth: int  # layers as evaluated (1 for a folded chain)
    fold: bool  # no ReLU between: all convs are one kernel (their product)


class _Piece(NamedTuple):
    """A run of pre-activations, (B, len(columns) n), of the gate stack."""
    kind: str  # 'chains' or a key of _PRE_ACTIVATIONS
    columns: Tuple[int, ...]
    layer: int = 0  # 'chains': the layer whose output they lead


class EdgePlan(NamedTuple):
    """How :func:`edge_mixture` evaluates one edge (pure data, no modules).

    Attributes:
        set_name: the operation set, a key of :data:`BATCHED_SETS`.
        num_ops: operations in the edge.
        chains: the convolution chains in the column order of the first
            layer's product: by depth, then by column, so the chains that
            have a layer l are a suffix of those that have layer l - 1.
        bounds: ``chains[bounds[l]:]`` are the chains with a layer l.
        pieces: the gates' pre-activations, in stacking order.
        gate_columns: the operation column of each stacked gate.
        gather: whether ``gate_columns`` differ from ``range(num_ops)``, so
            that ``mix`` must be gathered to match the gates.
        plain: one-operation pieces mixed as they are, without a sigmoid
            (``fc`` by default).
    """
    set_name: str
    num_ops: int
    chains: Tuple[_Chain, ...]
    bounds: Tuple[int, ...]
    pieces: Tuple[_Piece, ...]
    gate_columns: Tuple[int, ...]
    gather: bool
    plain: Tuple[_Piece, ...]


def _odd_same_padding(conv: nn.Module, sizes: Tuple[int, ...]) -> bool:
    """Whether ``conv`` keeps the map size, as :func:`conv_matrix` assumes."""
    return all(k % 2 == 1 for k in sizes) and tuple(conv.padding) == tuple(
        k // 2 for k in sizes)


def _describe_conv1d_chain(op: Conv1dChain):
    k = op.kernel_size
    if op.depth == 0 or not all(
            tuple(conv.kernel_size) == (k, ) and _odd_same_padding(
                conv, (k, )) for conv in op.convs):
        raise NotBatchable(f'a Conv1dChain needs one or more convs of one odd '
                           f'kernel size with padding k // 2; got '
                           f'{[tuple(c.kernel_size) for c in op.convs]}')
    return _Chain(-1, op.depth, False)


def _folded_size(kernel_sizes: Iterable[Size]) -> Optional[Size]:
    """The kernel size of convs applied in turn with no ReLU between, if
    they are one convolution, else None.

    Two zero-padded convolutions A then B compose into one (the product of
    their kernels) when, along each axis, one of them has extent 1: then
    either A is local along it, so its output beyond the border is the
    padding's zero, or B never reads beyond the border along it.
    """
    h, w = 1, 1
    for kh, kw in kernel_sizes:
        if (h > 1 and kh > 1) or (w > 1 and kw > 1):
            return None
        h, w = max(h, kh), max(w, kw)
    return h, w


def _describe_spatial_conv(op: SpatialConv):
    sizes = op.kernel_sizes
    if op.depth == 0 or not all(
            _odd_same_padding(conv, k) for conv, k in zip(op.convs, sizes)):
        raise NotBatchable(f'a SpatialConv needs one or more convs of odd '
                           f'kernel sizes with padding k // 2; got {sizes}')
    if op.relu_between or op.depth == 1:
        return _Chain(-1, op.depth, False)
    if _folded_size(sizes) is None:
        raise NotBatchable(f'SpatialConv({list(sizes)}, relu_between=False) '
                           f'is not one convolution (along each axis at '
                           f'most one kernel may be wider than 1)')
    return _Chain(-1, 1, True)


def _describe_fc(op: FCExcitation):
    return _Piece('fc', ()), bool(op.sigmoid)


def _describe_channel_affine(op: ChannelAffine):
    return _Piece('channel_affine', ()), True


def _describe_spatial_affine(op: SpatialAffine):
    return _Piece('spatial_affine', ()), True


class _SetForm(NamedTuple):
    """What a batched set's maps are and which operations it can hold."""
    map_size: Callable[[torch.Size], Size]  # of the convs' map, from x's
    max_dense: int  # above this many map entries, one by one
    describers: Mapping[type, Callable]  # exact type -> structure


def _channel_map(shape: torch.Size) -> Size:
    return 1, shape[1]  # (B, C, 1, 1): the C values as one sequence


def _spatial_map(shape: torch.Size) -> Size:
    return shape[-2], shape[-1]  # (B, 1, H, W)


# The operation sets with a batched evaluator, by name (space.py's). A set
# not named here runs operation by operation; a set named here must hold
# only the types its describers know (checked at import).
BATCHED_SETS: Dict[str, _SetForm] = {
    'channel_excitation':
    _SetForm(_channel_map, MAX_DENSE_CHANNELS, {
        Conv1dChain: _describe_conv1d_chain,
        FCExcitation: _describe_fc,
        ChannelAffine: _describe_channel_affine,
    }),
    'spatial_excitation':
    _SetForm(_spatial_map, MAX_DENSE_POSITIONS, {
        SpatialConv: _describe_spatial_conv,
        SpatialAffine: _describe_spatial_affine,
    }),
}


def plan_edge(set_name: str, ops: Sequence[nn.Module],
              names: Optional[Sequence[str]] = None) -> EdgePlan:
    """The batched evaluation of an edge of ``set_name`` holding ``ops``.

    Args:
        set_name: a key of :data:`BATCHED_SETS`.
        ops: the edge's operations, in column order.
        names: their names, for the error message.

    Raises:
        NotBatchable: naming the operation, when one has no batched form.
    """
    form = BATCHED_SETS[set_name]
    chains, gated, plain = [], [], []
    for column, op in enumerate(ops):
        describe = form.describers.get(type(op))
        try:
            if describe is None:
                raise NotBatchable(
                    f'{type(op).__name__} is none of '
                    f'{sorted(t.__name__ for t in form.describers)}')
            found = describe(op)
        except NotBatchable as err:
            name = f' {names[column]!r}' if names is not None else ''
            raise NotBatchable(
                f'{set_name} operation {column}{name} has no batched form: '
                f'{err}. Teach sase_mm/models/sase/fast/batched_edges.py its '
                f'structure, or drop {set_name!r} from its BATCHED_SETS') \
                from None
        if isinstance(found, _Chain):
            chains.append(found._replace(column=column))
        else:
            piece, is_gated = found
            (gated if is_gated else plain).append(
                piece._replace(columns=(column, )))
    chains.sort(key=lambda ch: (ch.depth, ch.column))
    depths = [ch.depth for ch in chains]
    max_depth = max(depths, default=0)
    bounds = tuple(sum(d <= layer for d in depths)
                   for layer in range(max_depth))
    # The chains that end at layer l, depth l + 1, lead that layer's output.
    ends = bounds[1:] + (len(chains), )
    for layer, (lo, hi) in enumerate(zip(bounds, ends)):
        if hi > lo:
            gated.append(
                _Piece('chains', tuple(ch.column for ch in chains[lo:hi]),
                       layer))
    # Stacked by first column, so that a set whose order allows it (the
    # spatial set) needs no gather of ``mix``.
    gated.sort(key=lambda p: min(p.columns))
    gate_columns = tuple(c for p in gated for c in p.columns)
    return EdgePlan(set_name, len(ops), tuple(chains), bounds, tuple(gated),
                    gate_columns, gate_columns != tuple(range(len(ops))),
                    tuple(plain))


# --------------------------------------------------------------------------
# Evaluation.
# --------------------------------------------------------------------------
def large_maps_batched(x: torch.Tensor) -> bool:
    """Whether an edge on maps above the dense cut-off runs batched, with
    :func:`map_conv`: where it runs the compiled kernels (CPU) or where
    ``conv2d`` is the GPU's (not on CPU: there the padded and grouped
    convolutions cost more than the operations one by one)."""
    return x.device.type != 'cpu' or compiled_applies(x)


def _layer_kernel(op: nn.Module, chain: _Chain, layer: int) -> torch.Tensor:
    if not chain.fold:
        return op.convs[layer].weight
    # Along each axis all but one kernel have extent 1 (_folded_size), so
    # the composed kernel is their broadcast product.
    kernel = None
    for conv in op.convs:
        k = conv.weight.reshape(conv.weight.shape[-2:])
        kernel = k if kernel is None else kernel * k
    return kernel


def _chain_layers(plan: EdgePlan, ops: Sequence[nn.Module], xf: torch.Tensor,
                  size: Size, dense: bool) -> List[torch.Tensor]:
    """Layer l's pre-activations of ``plan.chains[plan.bounds[l]:]``, each
    (B, len n), one product per layer (``dense``: with the convolutions'
    matrices) or one :func:`map_conv` per layer (else)."""
    b, n = xf.shape[0], size[0] * size[1]
    outputs: List[torch.Tensor] = []
    for layer, lo in enumerate(plan.bounds):
        inp = xf
        if layer:
            # The chains that go on are the previous layer's last ones.
            skip = lo - plan.bounds[layer - 1]
            prev = outputs[-1]
            inp = F.relu(prev[:, skip * n:] if skip else prev)
        kernels = [
            _layer_kernel(ops[ch.column], ch, layer)
            for ch in plan.chains[lo:]
        ]
        if dense:
            y = inp @ conv_matrix(kernels, size, block_diagonal=layer > 0)
        else:  # (B, 1 or len, H, W) maps, as (B, len n) rows
            y = map_conv(inp.view(b, -1, *size), kernels).view(b, -1)
        outputs.append(y)
    return outputs


def _affine_channel(op: ChannelAffine, xf: torch.Tensor,
                    size: Size) -> torch.Tensor:
    return torch.addcmul(op.bias.view(1, -1), op.weight.view(1, -1), xf)


def _affine_spatial(op: SpatialAffine, xf: torch.Tensor,
                    size: Size) -> torch.Tensor:
    return torch.addcmul(
        resize_to(op.bias, size).reshape(1, -1),
        resize_to(op.weight, size).reshape(1, -1), xf)


def _fc(op: FCExcitation, xf: torch.Tensor, size: Size) -> torch.Tensor:
    # 1x1 convs on (B, C, 1, 1) are linear layers, as in its forward.
    hidden = F.relu(F.linear(xf, op.reduce.weight.flatten(1)))
    return F.linear(hidden, op.expand.weight.flatten(1))


# Pre-activation of a one-operation piece: (op, x (B, n), size) -> (B, n).
_PRE_ACTIVATIONS: Dict[str, Callable] = {
    'channel_affine': _affine_channel,
    'spatial_affine': _affine_spatial,
    'fc': _fc,
}


class _GateMix(torch.autograd.Function):
    """``sum_o mix[o] gates[:, o]``: gates (B, k, n), mix (k, ) -> (B, n).

    ``torch.matmul(mix, gates)`` transposes the gates into a copy, forward
    and backward, and a batched product's backward makes the gates'
    gradient as k-by-1 products; here that gradient is one broadcast
    product, and the mix's one batched product. The backward is made of
    differentiable operations: its own derivatives are exact.
    """

    @staticmethod
    def forward(ctx, gates, mix):
        ctx.save_for_backward(gates, mix)
        return _GateMix.reference(gates, mix)

    @staticmethod
    def reference(gates, mix):
        b, k, n = gates.shape
        return torch.bmm(mix.view(1, 1, k).expand(b, 1, k), gates).view(b, n)

    @staticmethod
    def backward(ctx, grad):
        gates, mix = ctx.saved_tensors
        b, k, n = gates.shape
        g_gates = g_mix = None
        if ctx.needs_input_grad[0]:
            g_gates = grad.view(b, 1, n) * mix.view(1, k, 1)
        if ctx.needs_input_grad[1]:
            g_mix = torch.bmm(gates, grad.reshape(b, n, 1)).sum(0).view(k)
        return g_gates, g_mix


@functools.lru_cache(maxsize=64)
def _column_index(columns: Tuple[int, ...],
                  device: torch.device) -> torch.Tensor:
    return torch.tensor(columns, dtype=torch.long, device=device)


def edge_mixture(plan: EdgePlan, ops: Sequence[nn.Module], x: torch.Tensor,
                 mix: torch.Tensor) -> torch.Tensor:
    """``sum_o mix[o] * ops[o](x)`` for an edge planned by :func:`plan_edge`.

    Args:
        plan: the edge's structure.
        ops: the edge's operations, in column order (those it was planned
            from).
        x: (B, C, 1, 1) for a channel excitation, (B, 1, H, W) for a
            spatial one.
        mix: (num_ops, ) mixing weights, softmax(alpha_e).

    Returns:
        x's shape.
    """
    form = BATCHED_SETS[plan.set_name]
    size = form.map_size(x.shape)
    n = size[0] * size[1]
    compiled = compiled_applies(x)
    dense = n <= (min(form.max_dense, MAX_DENSE_WITH_KERNELS)
                  if compiled else form.max_dense)
    if not dense and not (compiled or large_maps_batched(x)):
        return weighted_sum([op(x) for op in ops], mix)
    b = x.shape[0]
    xf = x.reshape(b, n)
    layers = _chain_layers(plan, ops, xf, size, dense)

    def pre_activation(piece):
        if piece.kind != 'chains':
            return _PRE_ACTIVATIONS[piece.kind](ops[piece.columns[0]], xf,
                                                size)
        y = layers[piece.layer]
        end = len(piece.columns) * n
        return y if end == y.shape[1] else y[:, :end]

    mixed = None
    if plan.pieces:
        pre = [pre_activation(p) for p in plan.pieces]
        gates = torch.sigmoid(pre[0] if len(pre) == 1 else torch.cat(pre, 1))
        gate_mix = mix.index_select(
            0, _column_index(plan.gate_columns,
                             mix.device)) if plan.gather else mix
        mixed = apply(_GateMix, gates.view(b, len(plan.gate_columns), n),
                      gate_mix)
    for piece in plan.plain:
        column = piece.columns[0]
        y = pre_activation(piece)
        mixed = mix[column] * y if mixed is None else torch.addcmul(
            mixed, mix[column], y)
    return mixed.view_as(x)


def chain_kernels(plan: EdgePlan,
                  ops: Sequence[nn.Module]) -> List[torch.Tensor]:
    """The kernels of a one-chain plan's layers (a fixed block's edge),
    for :func:`conv_chain_gate`: ``ops[0]``'s convolutions, folded where
    the plan folds them."""
    (chain, ) = plan.chains
    return [_layer_kernel(ops[0], chain, layer)
            for layer in range(chain.depth)]


def chain_gate(plan: EdgePlan, ops: Sequence[nn.Module],
               x: torch.Tensor) -> torch.Tensor:
    """``ops[0](x)`` for the plan of one convolution chain (a fixed block's
    edge), by :func:`conv_chain_gate`.

    Args:
        plan: :func:`plan_edge` of ``ops``, one ``SpatialConv`` or
            ``Conv1dChain``.
        ops: that one operation.
        x: as for :func:`edge_mixture`.
    """
    size = BATCHED_SETS[plan.set_name].map_size(x.shape)
    return conv_chain_gate(x.view(x.shape[0], 1, *size),
                           chain_kernels(plan, ops)).view_as(x)


def batched_mixture(set_name: str,
                    ops: Sequence[nn.Module]) -> Optional[Callable]:
    """The batched evaluator of a ``set_name`` edge holding ``ops``.

    Returns:
        ``evaluate(ops, x, mix)`` (:func:`edge_mixture` with the edge's
        plan), or None when ``set_name`` has no batched evaluator.

    Raises:
        NotBatchable: when ``set_name`` has one but an operation of ``ops``
            has no batched form.
    """
    if set_name not in BATCHED_SETS:
        return None
    return functools.partial(edge_mixture, plan_edge(set_name, ops))


def check_declared_sets(op_sets: Mapping = OP_SETS, channels: int = 32,
                        spatial_size: Size = (4, 4)) -> Dict[str, EdgePlan]:
    """Plans every batched set as declared, on small instances of its ops.

    Run at import on ``space.OP_SETS``, so that a set reordered, extended or
    renamed there either keeps its batched evaluator or fails loudly.

    Args:
        op_sets: set name -> ``OpSet``.
        channels, spatial_size: what the instances are built for.

    Returns:
        Set name -> its plan.

    Raises:
        NotBatchable: a set named in :data:`BATCHED_SETS` is not declared,
            or holds an operation without a batched form.
    """
    plans = {}
    # Building draws initial weights; leave the caller's random state be.
    with torch.random.fork_rng(devices=[]):
        for name in BATCHED_SETS:
            if name not in op_sets:
                raise NotBatchable(
                    f'batched_edges.BATCHED_SETS names {name!r}, which is not '
                    f'a declared operation set ({list(op_sets)})')
            op_set = op_sets[name]
            ops = [
                op_set.build(op, channels, spatial_size)
                for op in op_set.names
            ]
            plans[name] = plan_edge(name, ops, op_set.names)
    return plans


DECLARED_PLANS = check_declared_sets()
