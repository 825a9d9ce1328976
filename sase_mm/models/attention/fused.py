"""The fixed SASE block as one autograd node with a closed-form input gradient.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333). In the derived block the input x (B, C, H, W) reaches
the output along several paths: E0's channel statistics, E4's spatial
statistics, E3's statistics of the gated map ``g * x``, and the output
``x * (1 + s2 / 2 + s5 / 2)`` itself. Under plain autograd every path writes
its own full-size gradient of x and the engine adds them up: on CPU the
block is memory-bound, and those writes and additions are most of its
backward pass.

Here the block is one node. Its forward computes the large reductions of x
outside autograd and hands them to the small part of the block (excitations
and mixer, tensors of B*C or B*H*W elements) as leaves of a graph of their
own. Its backward differentiates that small graph with
``torch.autograd.grad``, which gives the gradient of every statistic, then
writes dL/dx once, into one buffer, from the closed-form gradient of each
statistic:

====================  =============================================
statistic             contribution to dL/dx (g its gradient)
====================  =============================================
sum over dims         g, broadcast
max over dims         g / n_ties at the maxima (as ``torch.amax``)
sum of x^4            4 x^3 g
central sums S2, S3   d (2 g2 + 3 g3 d) - 3 g3 S2 / n, d = x - mean
sum_c gate_c x_c      gate_c g_hw
sum_c gate_c^4 x_c^4  4 gate_c^4 x^3 g_hw
output x * m          grad * m, m = 1 + s2 / 2 + s5 / 2
====================  =============================================

The broadcast terms are added as one low-rank matrix product (``baddbmm``).
The values are those of the generic path (same formulas, same order); the
gradients agree with it to rounding (``tests/models/attention/test_fused.py``).

It applies when the squeezes need only these statistics (:data:`FUSABLE`),
which includes the paper's block; other genotypes run the generic graph. A
second derivative (``create_graph=True``) recomputes the block with plain
autograd, so higher derivatives stay exact.
"""
from contextlib import contextmanager
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from ...ops import fused_kernels
from .dag import sase_maps
from .stats import Dims, FeatureStats, _flat, _sum

HW: Dims = (2, 3)
C: Dims = (1, )

# Squeeze operations (readable names) that read only the statistics above:
# E0 and E4 squeeze x, E3 the gated map g * x, whose statistics over C are
# products with g (sums and fourth powers; its max or central moments over
# C would need the full map).
FUSABLE: Dict[int, FrozenSet[str]] = {
    0: frozenset({'gap', 'l2_norm', 'l4_pool', 'gap_gmp', 'gap_std',
                  'gap_skew'}),
    3: frozenset({'gap', 'l4_pool'}),
    4: frozenset({'gap', 'l4_pool', 'gap_gmp', 'gap_std', 'gap_skew'}),
}


def fusable(genotype) -> bool:
    """Whether the block of ``genotype`` (edge ops, readable names) fuses."""
    return all(genotype[i] in ops for i, ops in FUSABLE.items())


class NotFusable(RuntimeError):
    """An operation asked for more than the statistics the fused path has."""


class _Entry(NamedTuple):
    kind: str  # sum, amax, pow4, central, gsum, gpow4
    dims: Dims
    outs: Tuple[torch.Tensor, ...]  # what the small graph differentiates
    aux: Tuple[torch.Tensor, ...] = ()  # values the closed form needs


class _Tape:
    """The statistics handed to the small graph, and their closed forms."""

    def __init__(self, x: torch.Tensor, kernels=None):
        self.x = x  # detached
        self.kernels = kernels  # compiled kernels (``sase_mm.ops``) or None
        self.entries: List[_Entry] = []
        self._x4: Optional[torch.Tensor] = None
        self._row_stats: Optional[Tuple[torch.Tensor, ...]] = None

    def release(self):
        """Drops x^4 (the entries keep only small tensors)."""
        self._x4 = None

    def row_stats(self) -> Tuple[torch.Tensor, ...]:
        """(sum, max, number of maxima) over H, W, each (B, C, 1, 1), in one
        pass of the compiled kernel."""
        if self._row_stats is None:
            b, c = self.x.shape[:2]
            self._row_stats = tuple(
                t.view(b, c, 1, 1) for t in self.kernels.row_stats(self.x))
        return self._row_stats

    def x4(self) -> torch.Tensor:
        """x^4 as two squarings (shared by every fourth-power statistic)."""
        if self._x4 is None:
            t = self.x * self.x
            self._x4 = t.mul_(t)
        return self._x4

    def leaf(self, kind, dims, *values, aux=()) -> Tuple[torch.Tensor, ...]:
        leaves = tuple(v.requires_grad_() for v in values)
        self.entries.append(_Entry(kind, tuple(dims), leaves, tuple(aux)))
        return leaves

    def stats(self, x: torch.Tensor) -> '_TapeStats':
        return _TapeStats(self, None)

    def gated(self, x: torch.Tensor, gate: torch.Tensor) -> '_TapeStats':
        return _TapeStats(self, gate)


class _WeightedPow4SumC(torch.autograd.Function):
    """sum_c w[b, c] x[b, c, n]^4 -> (B, H*W) by the compiled kernels, for
    w (B, C) in the small graph and x the tape's constant map; no x^4 map.

    Only ever differentiated once: a second derivative of the fused block
    recomputes it with plain autograd (``_plain_backward``).
    """

    @staticmethod
    def forward(ctx, w, tape):
        ctx.tape = tape
        return tape.kernels.gated_pow4_sum(tape.x, w.contiguous())

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        tape = ctx.tape
        return tape.kernels.pow4_rowdot(tape.x, grad.contiguous()), None


class _TapeStats(FeatureStats):
    """:class:`FeatureStats` whose reductions are leaves of the small graph.

    The statistics of x are computed outside autograd and made leaves; those
    of the gated map are products of x (a constant here) with the gate, which
    stays in the small graph. Anything needing the full map raises
    :class:`NotFusable`.
    """

    def __init__(self, tape: _Tape, gate: Optional[torch.Tensor]):
        super().__init__(None)
        self._tape = tape
        self._base, self._gate = tape.x, gate

    @property
    def x(self):
        raise NotFusable('the fused SASE block has statistics only, not the '
                         'feature map')

    @property
    def shape(self) -> torch.Size:
        return self._base.shape

    def _gated(self, dims) -> bool:
        if self._gate is None:
            return False
        if not self._gated_over_c(dims):
            raise NotFusable(f'no fused statistic of the gated map over '
                             f'{dims}')
        return True

    def sum(self, dims):
        def compute():
            if self._gated(dims):
                b, c, h, w = self._base.shape
                out = torch.bmm(self._gate.reshape(b, 1, c),
                                _flat(self._base)).view(b, 1, h, w)
                self._tape.entries.append(_Entry(
                    'gsum', tuple(dims), (out, ), (self._gate.detach(), )))
                return out
            if self._tape.kernels is not None and tuple(dims) == HW:
                value = self._tape.row_stats()[0].clone()
            else:
                value = _sum(self._base, dims)
            return self._tape.leaf('sum', dims, value)[0]

        return self._get(('sum', dims), compute)

    def amax(self, dims):
        def compute():
            if self._gate is not None:
                raise NotFusable('no fused maximum of the gated map')
            if self._tape.kernels is not None and tuple(dims) == HW:
                _, value, count = self._tape.row_stats()
                return self._tape.leaf('amax', dims, value.clone(),
                                       aux=(count, ))[0]
            return self._tape.leaf(
                'amax', dims, self._base.amax(dim=dims, keepdim=True))[0]

        return self._get(('amax', dims), compute)

    def mean_amax(self, dims):
        return self.mean(dims), self.amax(dims)

    def pow4_sum(self, dims):
        def compute():
            if self._gated(dims):
                b, c, h, w = self._base.shape
                g4 = self._gate.reshape(b, 1, c).square().square()
                if self._tape.kernels is not None:
                    out = _WeightedPow4SumC.apply(g4.view(b, c), self._tape)
                    out = out.view(b, 1, h, w)
                else:
                    out = torch.bmm(g4, _flat(self._tape.x4())).view(
                        b, 1, h, w)
                self._tape.entries.append(_Entry(
                    'gpow4', tuple(dims), (out, ), (self._gate.detach(), )))
                return out
            return self._tape.leaf('pow4', dims,
                                   _sum(self._tape.x4(), dims))[0]

        return self._get(('pow4', dims), compute)

    def central_sums(self, dims):
        def compute():
            if self._gate is not None:
                raise NotFusable('no fused central moments of the gated map')
            mean = self.mean(dims).detach()
            d = self._base - mean
            t = d * d
            s2 = _sum(t, dims)
            s3 = _sum(t.mul_(d), dims)
            return self._tape.leaf('central', dims, s2, s3,
                                   aux=(mean, s2.detach().clone()))

        return self._get(('central_sums', dims), compute)


def _input_grad(x: torch.Tensor, t: torch.Tensor, entries: List[_Entry],
                grads: Dict[int, Tuple]) -> torch.Tensor:
    """Adds every statistic's closed-form gradient to ``t`` (in place).

    ``t`` starts as the output path's ``grad * m``; ``grads[i]`` holds the
    small graph's gradients of ``entries[i].outs`` (None where unused).
    Broadcast terms become one rank-k product ``U @ V`` (U (B, C, k),
    V (B, k, H*W)); the x^3 terms share one x^3.
    """
    b, c, h, w = x.shape
    # (row (B, C) or None, column (B, HW) or None) pairs, None a broadcast:
    sums = []  # terms row_c col_hw
    cubes = []  # terms x^3 row_c col_hw

    def term(dims, g):  # g broadcast along dims -> (row, column)
        if tuple(dims) == HW:
            return g.reshape(b, c), None
        return None, g.reshape(b, h * w)

    for e, gs in ((entries[i], grads[i]) for i in sorted(grads)):
        g = gs[0]
        if e.kind == 'sum':
            sums.append(term(e.dims, g))
        elif e.kind == 'gsum':
            sums.append((e.aux[0].reshape(b, c), g.reshape(b, h * w)))
        elif e.kind == 'amax':
            # As torch.amax's gradient: ties share it equally.
            mask = torch.eq(x, e.outs[0], out=torch.empty_like(x))
            t.addcmul_(mask, g / mask.sum(dim=e.dims, keepdim=True))
            del mask  # free it before the next full-size temporary
        elif e.kind == 'pow4':
            cubes.append(term(e.dims, 4 * g))
        elif e.kind == 'gpow4':
            g4 = e.aux[0].reshape(b, c).square().square()
            cubes.append((4 * g4, g.reshape(b, h * w)))
        elif e.kind == 'central':
            g2, g3 = gs
            mean, s2 = e.aux
            n = x.numel() // mean.numel()  # elements per statistic
            d = x - mean
            if g3 is None:
                t.add_(d.mul_(2 * g2))
                continue
            q = torch.mul(d, 3 * g3)
            if g2 is not None:
                q.add_(2 * g2)
            t.addcmul_(q, d)
            del q, d
            sums.append(term(e.dims, -3 * g3 * s2 / n))
        else:  # pragma: no cover - every kind the tape records is above
            raise AssertionError(e.kind)
    if sums:
        row, col = sums[0]
        if len(sums) == 1 and (row is None or col is None):
            t.add_(row.view(b, c, 1, 1) if col is None else
                   col.view(b, 1, h, w))
        else:
            t.view(b, c, h * w).baddbmm_(*_stacked(sums, x))
    if cubes:
        x3 = x * x
        x3.mul_(x)
        if len(cubes) == 1:
            row, col = cubes[0]
            if row is not None and col is not None:
                x3.mul_(row.view(b, c, 1, 1))
                t.addcmul_(x3, col.view(b, 1, h, w))
            elif row is not None:
                t.addcmul_(x3, row.view(b, c, 1, 1))
            else:
                t.addcmul_(x3, col.view(b, 1, h, w))
        else:
            t.addcmul_(x3, torch.bmm(*_stacked(cubes, x)).view(b, c, h, w))
    return t


def _stacked(pairs, x: torch.Tensor):
    """(U (B, C, k), V (B, k, H*W)) with U @ V = sum_k row_k col_k^T for
    ``pairs`` of (row (B, C) or None, column (B, H*W) or None); None is a
    vector of ones (a term broadcast along that axis)."""
    b, c, h, w = x.shape
    ones_c, ones_s = x.new_ones(b, c), x.new_ones(b, h * w)
    u = torch.stack([ones_c if r is None else r for r, _ in pairs], 2)
    v = torch.stack([ones_s if s is None else s for _, s in pairs], 1)
    return u, v


class _FusedSASE(torch.autograd.Function):
    """out = SASE(x) as one node; see the module docstring.

    Inputs: x (B, C, H, W), the block, then the block's parameters that
    require gradients (so that autograd routes their gradients here).

    Memory: besides x it keeps only the small graph (and, without the
    compiled kernels, x^4 when E3 is L4 pooling); not the full-size factor
    ``1 + s2 / 2 + s5 / 2``. The first backward pass frees them; another
    one (``retain_graph=True``) recomputes them from the saved x, on copies
    of the BN buffers, and gives the same values.
    """

    @staticmethod
    def forward(ctx, x, block, *params):
        tape, (s2, s5) = _tape_forward(block, x)
        ctx.block, ctx.state = block, (tape, s2, s5)
        ctx.save_for_backward(x, *params)
        a, b = _factors(s2.detach(), s5.detach())
        if tape.kernels is not None:
            # (B, C, H, W) already: a view here would forbid ``out += id``.
            return tape.kernels.scale(tape.x, *_rows(a, b))
        return _residual(x, a, b)

    @staticmethod
    def backward(ctx, grad):
        x, *params = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: plain autograd
            grad_x, *param_grads = _plain_backward(
                ctx.block, x, params, grad, ctx.needs_input_grad)
            return (grad_x, None, *param_grads)
        state, ctx.state = ctx.state, None  # freed after this pass
        if state is None:  # a second backward through a retained graph
            with _spare_buffers(ctx.block):
                tape, (s2, s5) = _tape_forward(ctx.block, x.detach())
        else:
            tape, s2, s5 = state
        grad_x, param_grads = _tape_backward(tape, s2, s5, x, params, grad,
                                             ctx.needs_input_grad)
        return (grad_x, None, *param_grads)


def _tape_forward(block: nn.Module, x: torch.Tensor):
    """The maps (s2, s5) of ``block`` on x, from statistics on a tape."""
    kernels = fused_kernels() if _kernel_ready(x) else None
    xd = x.detach()
    tape = _Tape(xd.contiguous() if kernels is not None else xd, kernels)
    with torch.enable_grad():
        maps = sase_maps(tape.x, block.edge_fn, block.mixer,
                         stats=tape.stats, gated=tape.gated)
    return tape, maps


def _tape_backward(tape: _Tape, s2, s5, x, params, grad, needs_input_grad):
    """(dL/dx, gradients of ``params``) from the output gradient ``grad``:
    the maps' gradients, the small graph's backward, then the closed forms
    (``needs_input_grad`` as the Function's: x, block, params)."""
    entries, kernels = tape.entries, tape.kernels
    b, c, h, w = x.shape
    if kernels is not None:
        grad = grad.contiguous()
        buf = None
        row, col = kernels.grad_dots(grad, tape.x)
        gs2, gs5 = row.view(b, c, 1, 1) * 0.5, col.view(b, 1, h, w) * 0.5
    else:
        buf = torch.mul(grad, x)
        gs2 = _sum(buf, HW) * 0.5
        gs5 = _sum(buf, C) * 0.5
    want_x = needs_input_grad[0]
    outs = [o for e in entries for o in e.outs] if want_x else []
    wanted = [p for p, need in zip(params, needs_input_grad[2:]) if need]
    got = torch.autograd.grad([s2, s5], outs + wanted, [gs2, gs5],
                              allow_unused=True)
    tape.release()  # x^4 goes before the full-size temporaries come
    grad_x = None
    if want_x:
        grads, k = {}, 0
        for i, e in enumerate(entries):
            gs = got[k:k + len(e.outs)]
            k += len(e.outs)
            if any(g is not None for g in gs):
                grads[i] = gs
        s2, s5 = s2.detach(), s5.detach()
        if kernels is not None:
            grad_x = _kernel_input_grad(kernels, grad, tape.x, s2, s5,
                                        entries, grads)
        if grad_x is None:
            t = _residual(grad, *_factors(s2, s5), out=buf)
            grad_x = _input_grad(x, t, entries, grads)
        grad_x = grad_x.view_as(x)
    param_grads = iter(got[len(outs):])
    return grad_x, tuple(next(param_grads) if need else None
                         for need in needs_input_grad[2:])


@contextmanager
def _spare_buffers(block: nn.Module):
    """Runs the body with copies of the block's buffers in place, so that a
    recomputed forward does not update BN running statistics a second time
    (the originals are swapped back, not written: BN may have saved them
    for its backward)."""
    originals = [(m, name, t) for m in block.modules()
                 for name, t in m._buffers.items() if t is not None]
    for m, name, t in originals:
        m._buffers[name] = t.clone()
    try:
        yield
    finally:
        for m, name, t in originals:
            m._buffers[name] = t


def _kernel_ready(x: torch.Tensor) -> bool:
    """Whether the compiled kernels apply to x (CPU, float or double)."""
    return (x.device.type == 'cpu'
            and x.dtype in (torch.float32, torch.float64))


def _factors(s2: torch.Tensor, s5: torch.Tensor):
    """(a (B, C, 1, 1), b (B, 1, H, W)) with 1 + s2 / 2 + s5 / 2 = a + b."""
    return s2 * 0.5 + 1.0, s5 * 0.5


def _rows(*maps: torch.Tensor):
    """(B, ...) maps as contiguous (B, n) rows, the kernels' layout."""
    return tuple(t.reshape(t.shape[0], -1).contiguous() for t in maps)


def _kernel_input_grad(kernels, grad, x, s2, s5, entries: List[_Entry],
                       grads: Dict[int, Tuple]) -> Optional[torch.Tensor]:
    """dL/dx in one pass of the compiled ``combine`` kernel, or None when a
    statistic has no slot there (fourth powers or central moments of x,
    maxima over C): the PyTorch closed forms then take over."""
    b, c = x.shape[:2]
    terms = {}

    def put(key, value):
        if key in terms:
            if key in ('r', 's'):  # broadcast sums add up
                terms[key] = terms[key] + value
                return True
            return False
        terms[key] = value
        return True

    for i, gs in grads.items():
        e, g = entries[i], gs[0]
        if e.kind == 'sum':
            ok = put('r', g.reshape(b, c)) if e.dims == HW else put(
                's', g.reshape(b, -1))
        elif e.kind == 'gsum':
            ok = put('u', e.aux[0].reshape(b, c)) and put(
                'v', g.reshape(b, -1))
        elif e.kind == 'amax' and e.dims == HW and e.aux:
            ok = put('mx', e.outs[0].detach().reshape(b, c)) and put(
                'share', (g / e.aux[0]).reshape(b, c))
        elif e.kind == 'gpow4':
            ok = put('k', 4 * e.aux[0].reshape(b, c).square().square()) \
                and put('q', g.reshape(b, -1))
        else:
            ok = False
        if not ok:
            return None
    a, bn = _rows(*_factors(s2, s5))
    args = [terms.get(k) for k in ('r', 's', 'u', 'v', 'mx', 'share', 'k',
                                   'q')]
    return kernels.combine(grad, x, a, bn, *[
        None if t is None else t.contiguous() for t in args])


def _residual(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
              out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x * (a + b) as ``x * a + x * b`` (no full-size factor); x (B, C, H,
    W), a (B, C, 1, 1), b (B, 1, H, W) from :func:`_factors`."""
    return torch.mul(x, a, out=out).addcmul_(x, b)


def _plain_backward(block: nn.Module, x: torch.Tensor, params, grad,
                    needs_input_grad) -> tuple:
    """Gradients of x and ``params`` through the generic graph, with
    ``create_graph=True``. The forward is recomputed on copies of the
    buffers, so BN running statistics are updated once per forward, as
    without fusion."""
    with _spare_buffers(block), torch.enable_grad():
        out = block.forward_generic(x)
    inputs = [x] + list(params)
    wanted = [i for i, t in enumerate(inputs)
              if needs_input_grad[0 if i == 0 else i + 1] and t.requires_grad]
    got = torch.autograd.grad(out, [inputs[i] for i in wanted], grad,
                              create_graph=True, allow_unused=True)
    result = [None] * len(inputs)
    for i, g in zip(wanted, got):
        result[i] = g
    return tuple(result)


def fused_sase(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Runs the fixed ``block`` on x (B, C, H, W) as one autograd node.

    ``block`` provides ``edge_fn``, ``mixer`` and ``forward_generic``.
    """
    params = [p for p in block.parameters() if p.requires_grad]
    return _FusedSASE.apply(x, block, *params)
