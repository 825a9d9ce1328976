"""Mixed precision of the SASE blocks (SASE, arXiv 2411.08333).

Under autocast, and for float16 / bfloat16 inputs, both blocks take their
statistics (sums, fourth powers, central moments, their gradients) in
float32 (``layers/precision.in_float32``) and return the input's dtype.
Inputs with activations up to 1e3 (a float16 fourth power overflows above
about 16) must give finite outputs and gradients within 1e-2 relative of the
float32 block: for SASE (fused and generic), SASESearch, and every operation
of every set declared in ``sase/space.py``, each placed on its edge of a
fixed block. CPU runs bfloat16 and float16 autocast; CUDA where present.
"""
import pytest
import torch

from sase_mm.models.sase import SASE, SASESearch
from sase_mm.models.sase.genotype import SASE_PAPER_GENOTYPE
from sase_mm.models.sase.space import EDGES

DTYPES = [torch.bfloat16, torch.float16]


def _rel(a, b):
    return ((a.float() - b).norm() / b.norm().clamp_min(1e-30)).item()


def _check(block, dtype, device, c=8):
    """The block on a half-precision input with |x| up to 1e3, under
    autocast, against float32: finite, close, the input's dtype."""
    block = block.to(device)
    x = (torch.randn(2, c, 6, 5, device=device) * 300).clamp(-1e3, 1e3)
    x[0, 0, 0, 0] = 1e3
    state = {k: v.clone() for k, v in block.state_dict().items()}
    # The same (rounded) input values and output gradient for both: what
    # is compared is the block's own arithmetic.
    x32 = x.to(dtype).float().requires_grad_()
    y32 = block(x32)
    gy = torch.randn_like(y32).to(dtype)
    params = [p for p in block.parameters() if p.requires_grad]
    g32 = torch.autograd.grad(y32, [x32] + params, gy.float(),
                              allow_unused=True)
    block.load_state_dict(state)  # BN statistics as before
    xh = x.to(dtype).requires_grad_()
    with torch.autocast(device, dtype=dtype):
        yh = block(xh)
    assert yh.dtype == dtype
    # backward outside autocast, as torch's AMP recipe and mmengine's
    # train_step (update_params after optim_context) do
    gh = torch.autograd.grad(yh, [xh] + params, gy, allow_unused=True)
    # Where the float32 output itself exceeds the dtype's range (float16
    # above 65504: the search block's unbounded FC excitation can scale a
    # 1e3 input past it), no output of that dtype can hold it.
    fits = y32.detach().abs() < torch.finfo(dtype).max
    assert fits.float().mean() > 0.5
    assert torch.isfinite(yh[fits]).all()
    assert _rel(yh[fits], y32[fits]) < 1e-2
    for a, b in zip(gh, g32):
        if b is None:
            continue
        assert a.dtype == b.dtype or a.dtype == dtype
        assert torch.isfinite(a).all()
        assert _rel(a, b) < 1e-2


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('kind', ['fused', 'generic', 'search'])
def test_blocks_under_autocast(kind, dtype, device):
    torch.manual_seed(0)
    block = (SASESearch(8) if kind == 'search' else
             SASE(8, fused=kind == 'fused'))
    _check(block, dtype, device)


def _genotypes():
    for i, edge in enumerate(EDGES):
        for name in edge.op_set.names:
            ops = list(SASE_PAPER_GENOTYPE)
            ops[i] = name
            yield pytest.param(ops, id=f'{edge.op_set.name}-{name}')


@pytest.mark.parametrize('ops', list(_genotypes()))
def test_every_operation_under_bfloat16_autocast(ops):
    torch.manual_seed(0)
    _check(SASE(8, genotype=ops), torch.bfloat16, 'cpu')


def test_fused_path_runs_under_autocast():
    """The fused node is not skipped under autocast any more."""
    from sase_mm.models.sase.fast.fused import node
    calls = []
    apply = node._FusedSASE.apply
    try:
        node._FusedSASE.apply = lambda *a: calls.append(1) or apply(*a)
        x = torch.randn(2, 8, 5, 5, requires_grad=True)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            SASE(8)(x)
    finally:
        node._FusedSASE.apply = apply
    assert calls
