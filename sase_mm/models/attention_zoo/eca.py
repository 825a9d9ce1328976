"""ECA: the Efficient Channel Attention module.

Wang, Wu, Zhu, Li, Zuo and Hu, "ECA-Net: Efficient Channel Attention for Deep
Convolutional Neural Networks", CVPR 2020. GAP, then one 1-D convolution
(no bias) across the channel sequence with an adaptive kernel size, sigmoid,
rescale::

    k = odd(|(log2(C) + b) / gamma|),  gamma = 2, b = 1
    out = x * sigmoid(conv1d_k(GAP(x)))

``odd(t)`` is t if t is odd, else t + 1 (t truncated to an int), so C = 64,
256, 512, 2048 give k = 3, 5, 5, 7. The conv is SASE's channel excitation
``Conv1dChain`` with one conv (the same operation).
"""
import math
from typing import Optional

import torch
import torch.nn as nn

from ..layers.arg_checks import check_int
from ..layers.dims import HW_DIMS
from ..layers.excitation import Conv1dChain
from ..layers.precision import half_in_float32
from ..layers.registration import register_model
from ..layers.squeeze import MeanPool


def eca_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    """ECA-Net's adaptive kernel size: the odd number near (log2 C + b) / g."""
    t = int(abs((math.log2(check_int('channels', channels)) + b) / gamma))
    return t if t % 2 else t + 1


@register_model
class ECA(nn.Module):
    """Efficient Channel Attention.

    Args:
        in_channels (int): C of the input (B, C, H, W).
        kernel_size (int, optional): an odd k; default: adaptive from C.
        gamma (float), b (float): the adaptive rule's constants (2 and 1).
    """
    _abbr_ = 'eca'

    def __init__(self, in_channels: int, kernel_size: Optional[int] = None,
                 gamma: float = 2, b: float = 1):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        if kernel_size is None:
            kernel_size = eca_kernel_size(in_channels, gamma, b)
        elif check_int('kernel_size', kernel_size) % 2 == 0:
            raise ValueError(f'kernel_size must be odd (the conv keeps the '
                             f'channel count), got {kernel_size}')
        self.kernel_size = kernel_size
        self.squeeze = MeanPool(HW_DIMS)
        self.excite = Conv1dChain(kernel_size, depth=1)  # includes sigmoid

    @half_in_float32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        return x * self.excite(self.squeeze(x))

    def extra_repr(self):
        return f'in_channels={self.in_channels}, k={self.kernel_size}'
