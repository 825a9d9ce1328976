"""torch.compile of the SASE block, the search block and SASE backbones.

SASE (arXiv 2411.08333). The reproduction: ``torch.compile(SASE(C))``
ran a (2, C, 14, 14) input and then raised ``InductorError: cannot determine
truth value of Relational`` on (2, C, 10, 12), when dynamo recompiled with
symbolic H, W. The cause: the 1-channel convolutions of the excitations
(``layers/excitation.py``) ran the batch as groups of one conv through a
(1, B, ...) view; that view is saved for backward, so it is an output of the
compiled forward graph, and inductor sorts its symbolic strides without the
shape environment (``h * w < w`` is undecidable to sympy). Under compile
they run the plain conv (same maths) instead.

Compile is slow on CPU, so these tests are few and small. The reproduction
uses inductor (the failing backend) on a small block; the backbones use
``backend='aot_eager'`` (dynamo capture, AOT autograd, fake tensors and
dynamic shapes, without inductor's C++ code generation).

Even so, capturing a ResNet-50 with 16 SASE blocks takes about three minutes
on two CPU cores, and the search block (whose batched edges specialise on
the map size, so each shape is a recompile) over two: those tests run when
``SASE_MM_SLOW_TESTS=1`` and are otherwise skipped with that reason.
"""
import copy
import os

import pytest
import torch
import torch._dynamo

from sase_mm.models.layers import compiled as stat_kernels
from sase_mm.models.sase import SASE, SASESearch

SHAPES = ((14, 14), (10, 12), (9, 7))
slow = pytest.mark.skipif(
    os.environ.get('SASE_MM_SLOW_TESTS', '') in ('', '0'),
    reason='compiles for minutes on a CPU: set SASE_MM_SLOW_TESTS=1')


def _compare(model, compiled, x, grads=True):
    """Compiled and eager outputs (and input / parameter gradients) agree."""
    def run(fn):
        # Forward and backward of one model before the other runs: both
        # update the BN running statistics in place.
        xi = x.clone().requires_grad_(grads)
        y = fn(xi)
        y = y[-1] if isinstance(y, (tuple, list)) else y
        if not grads:
            return y, ()
        params = [p for p in model.parameters() if p.requires_grad]
        return y.detach(), torch.autograd.grad(
            y.square().sum(), [xi] + params, allow_unused=True)

    ye, ge = run(model)
    yc, gc = run(compiled)
    torch.testing.assert_close(yc, ye, rtol=1e-4, atol=1e-5)
    for a, b in zip(gc, ge):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_issue_reproduction_inductor_shape_change():
    """The issue's steps with inductor: a second input shape recompiles
    with dynamic H, W and matches eager (it raised an InductorError)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    block = SASE(8).eval()  # grad mode on: the graph saves for backward
    compiled = torch.compile(block)
    for h, w in SHAPES[:2]:
        x = torch.randn(2, 8, h, w)
        torch.testing.assert_close(compiled(x), block(x), rtol=1e-4,
                                   atol=1e-5)


@pytest.mark.parametrize('name', ['SASE', pytest.param('SASESearch',
                                                         marks=slow)])
def test_blocks_train_under_compile_at_three_shapes(name, monkeypatch):
    """Training-mode forward and backward of both blocks, dynamic shapes.

    Compiled, the statistics run their PyTorch formulas (a compiler cannot
    trace the compiled statistics kernels); eager runs them too here, so
    both sides sum in the same order (the kernels against the formulas:
    tests/models/layers/test_compiled.py)."""
    monkeypatch.setattr(stat_kernels.STATS, 'tried', True)
    monkeypatch.setattr(stat_kernels.STATS, 'module', None)
    torch._dynamo.reset()
    torch.manual_seed(0)
    block = SASE(16) if name == 'SASE' else SASESearch(16)
    compiled = torch.compile(block, backend='aot_eager', dynamic=True)
    for h, w in SHAPES:
        # (eval-mode BN would hide the batch statistics; train mode updates
        # the running statistics twice, once per call, as eager does)
        _compare(block, compiled, torch.randn(2, 16, h, w))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16],
                         ids=['float16', 'bfloat16'])
def test_half_precision_block_compiles_in_one_graph(dtype):
    """A ``.half()`` / bfloat16 block (float32 casts of its state for the
    call, ``layers/precision.py``) compiles without a graph break and
    matches eager, its BN running statistics included."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    block = SASE(8).to(dtype)
    eager = copy.deepcopy(block)
    compiled = torch.compile(block, backend='aot_eager', fullgraph=True)
    x = torch.randn(2, 8, 5, 5).to(dtype)
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    yc, ye = compiled(xc), eager(xe)
    assert yc.dtype == dtype
    torch.testing.assert_close(yc, ye)
    yc.float().square().sum().backward()
    ye.float().square().sum().backward()
    torch.testing.assert_close(xc.grad, xe.grad)
    for (k, p), q in zip(block.named_parameters(), eager.parameters()):
        assert p.grad.dtype == dtype, k
        torch.testing.assert_close(p.grad, q.grad, msg=k)
    for (k, b), c in zip(block.named_buffers(), eager.buffers()):
        torch.testing.assert_close(b, c, msg=k)


def _backbones():
    from mmengine.registry import DefaultScope

    import sase_mm  # noqa: F401
    from sase_mm.models.backbones import SASEResNet
    from sase_mm.registry import MODELS
    from mmdet.models.backbones import ResNet  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmdet'):
        mmdet = MODELS.build(dict(
            type='mmdet.ResNet', depth=50, num_stages=4,
            out_indices=(3, ), plugins=[dict(
                cfg=dict(type='sase_mm.SASE'), position='after_conv3',
                stages=(True, True, True, True))]))
    return dict(sase_resnet50=SASEResNet(50, out_indices=(3, )),
                mmdet_resnet50_sase=mmdet)


@slow
@pytest.mark.parametrize('name', ['sase_resnet50', 'mmdet_resnet50_sase'])
def test_resnet50_with_sase_under_compile_at_three_shapes(name):
    """ResNet-50 backbones with SASE, compiled once with dynamic shapes,
    match eager at three input sizes (inference; mmdet's train() returns
    None, so eval() first)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = _backbones()[name]
    model.eval()
    compiled = torch.compile(model, backend='aot_eager', dynamic=True)
    for h, w in ((64, 64), (48, 80), (72, 56)):
        with torch.no_grad():
            _compare(model, compiled, torch.randn(1, 3, h, w), grads=False)
