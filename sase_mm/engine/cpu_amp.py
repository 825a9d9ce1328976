"""Mixed precision on CPU: an optim wrapper with bfloat16 autocast.

SASE (arXiv 2411.08333). mmengine's ``AmpOptimWrapper`` refuses
to build without a GPU (it asserts CUDA / NPU / MLU / MUSA). On CPU,
``tools/train.py --amp`` and ``tools/search.py --amp`` use this instead:
the same ``optim_context`` (autocast around the forward pass), on the CPU,
in bfloat16 by default. bfloat16 has float32's exponent range, so no loss
scaling is needed, and none is done; ``float16`` may be asked for but then
small gradients can underflow (use a GPU and ``AmpOptimWrapper``).
"""
from contextlib import contextmanager
from typing import Union

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


# In the root registry (sase_mm has no optim-wrapper registry of its own):
# ``type='CPUAmpOptimWrapper'``.
@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose ``optim_context`` enables CPU autocast.

    Args:
        dtype (str | torch.dtype): ``'bfloat16'`` (default) or
            ``'float16'``.
        loss_scale: accepted for config compatibility with
            ``AmpOptimWrapper`` and ignored (no scaling on CPU).
        **kwargs: ``OptimWrapper``'s.
    """
    valid_dtypes = ('float16', 'bfloat16')

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16',
                 loss_scale=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(dtype, str):
            if dtype not in self.valid_dtypes:
                raise ValueError(f'CPUAmpOptimWrapper dtype must be one of '
                                 f'{self.valid_dtypes}, got {dtype!r}')
            dtype = getattr(torch, dtype)
        if dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f'CPUAmpOptimWrapper dtype must be float16 or '
                             f'bfloat16, got {dtype}')
        self.cast_dtype = dtype

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast(
                'cpu', dtype=self.cast_dtype):
            yield
