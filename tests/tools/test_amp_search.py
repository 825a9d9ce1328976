"""--amp for tools/search.py and tools/train.py on CPU (SASE arXiv
2411.08333, DARTS Liu et al. ICLR 2019).

Without a GPU, --amp builds ``CPUAmpOptimWrapper`` (sase_mm.engine,
registered in mmengine's root registry; bfloat16 autocast), since mmengine's
AmpOptimWrapper refuses to build there. A tiny digits search runs one
epoch of first- and of second-order DARTS under it, and the Hessian-vector
product's finite differences stay in float32.
"""
import pytest
import torch
from data_utils.tool_runs import TINY_DIGITS as TINY
from data_utils.tool_runs import config_path, load_tool

from sase_mm.engine import CPUAmpOptimWrapper

DIGITS = config_path('search/sase_r8_digits.py')


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='CPU --amp path (a GPU builds AmpOptimWrapper)')
@pytest.mark.parametrize('order', [1, 2])
def test_tiny_amp_search_first_and_second_order(tmp_path, order,
                                                monkeypatch):
    from sase_mm.models.search import architect
    seen = []
    hvp = architect.hessian_vector_product

    def spy(model, batch, *a, **k):  # autocast state inside the HVP passes
        loss = model.batch_loss

        def batch_loss(*b, **kw):
            seen.append(torch.is_autocast_enabled('cpu'))
            return loss(*b, **kw)
        model.batch_loss = batch_loss
        try:
            return hvp(model, batch, *a, **k)
        finally:
            del model.batch_loss

    monkeypatch.setattr(architect, 'hessian_vector_product', spy)
    tool = load_tool('search')
    runner = tool.main([DIGITS, '--work-dir', str(tmp_path), '--amp',
                        '--cfg-options', f'model.order={order}'] + TINY)
    w_opt = runner.optim_wrapper['weights']
    assert isinstance(w_opt, CPUAmpOptimWrapper)
    assert w_opt.cast_dtype == torch.bfloat16
    assert torch.isfinite(runner.model.alphas).all()
    assert runner.model.alphas.dtype == torch.float32
    if order == 2:
        assert seen and not any(seen)  # float32 finite differences
    else:
        assert not seen


def test_amp_wrapper_rejects_a_bad_dtype():
    with pytest.raises(ValueError, match='float16 or bfloat16|one of'):
        CPUAmpOptimWrapper(dtype='int8', optimizer=torch.optim.SGD(
            [torch.nn.Parameter(torch.zeros(1))], lr=0.1))


def test_train_tool_amp_config_on_cpu():
    if torch.cuda.is_available():
        pytest.skip('CPU --amp path (a GPU builds AmpOptimWrapper)')
    tool = load_tool('train')
    args = tool.parse_args([config_path('search/sase_r8_digits.py'),
                            '--amp', '--amp-dtype', 'bfloat16'])
    cfg = tool.build_config(args)
    assert cfg.optim_wrapper.type == 'CPUAmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
