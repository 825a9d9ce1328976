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
statistic (each defined once, with its forward value, in
``layers/stat_formulas.py``; the output path in ``sase/dag.py``):

=====================  ====================================================
statistic              contribution to dL/dx (g its gradient)
=====================  ====================================================
``Sum`` over dims      g, broadcast
``Amax`` over dims     g / n_ties at the maxima (as ``torch.amax``)
``Pow4Sum`` (x^4)      4 x^3 g
``CentralSums``        d (2 g2 + 3 g3 d) - 3 g3 S2 / n, d = x - mean
``GatedSumC``          gate_c g_hw (of sum_c gate_c x_c)
``GatedPow4SumC``      4 gate_c^4 x^3 g_hw (of sum_c gate_c^4 x_c^4)
output, ``residual``   grad * (a + b), a = 1 + s2 / 2, b = s5 / 2
=====================  ====================================================

The broadcast terms are added as one low-rank matrix product (``baddbmm``).
The values are those of the generic path (same definitions); the gradients
agree with it to rounding (``tests/models/sase/fast/test_fused.py``, which
also pairs each compiled kernel with the Python definition it restates).

The node is split by concern: ``tape.py`` captures the statistics (and
derives which genotypes it can describe), ``input_grad.py`` assembles dL/dx
from the statistics' gradient terms with PyTorch operators, ``dispatch.py``
chooses and calls the compiled kernels (``../kernels.py``), ``spatial.py``
runs the small graph's mixer and spatial excitation as one node of them
(where its (B, 1, H, W) maps would cost a dozen autograd nodes), ``node.py``
is the autograd Function (retained graphs, BN buffers, double backward), and
``op.py`` is the same block as a ``torch.library`` operator pair,
``sase_mm::fused_sase`` and ``sase_mm::fused_sase_backward`` (fake
implementations, a registered autograd formula).

Where each runs: eager training uses the autograd Function, which keeps its
tape from forward to backward (``op.py``'s backward recomputes it, so eager
stays on the Function, the faster one). Under ``torch.compile`` (static or
dynamic shapes) and ``torch.export`` (``torch.compiler.is_compiling()``)
the block is one call of the operator, so there is no graph break and no
fallback to the generic graph; autocast (the block runs in float32, see
``layers/precision.in_float32``) and channels_last inputs reach it too.
A half-precision input or block is refused (``node.check_full_precision``):
``SASE.forward`` runs an input in float32, and a half-precision block
through the generic graph on float32 casts of its parameters.
Inside both, on CPU the compiled kernels run, elsewhere (CUDA) the PyTorch
closed forms. ``torch.jit`` tracing still records the generic graph.

It applies when the squeezes need only these statistics (:data:`FUSABLE`,
derived from what each squeeze operation declares it reads), which includes
the paper's block; other genotypes run the generic graph. A second
derivative (``create_graph=True``) recomputes the block with plain autograd,
so higher derivatives stay exact (for the Function and, in eager mode, the
operator; AOT autograd, hence ``torch.compile``, has no double backward).
"""
from .node import fused_sase
from .op import fused_sase_op
from .tape import FUSABLE, NotFusable, fusable

__all__ = ['FUSABLE', 'NotFusable', 'fusable', 'fused_sase', 'fused_sase_op']
