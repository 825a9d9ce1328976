"""GatedCT: the Gated Channel Transformation (GCT-Net).

Yang, Zhu, Wu and Yang, "Gated Channel Transformation for Visual
Recognition", CVPR 2020, section 3 and the authors' code. Global context
embedding (l2 norm over H, W, scaled by alpha), channel normalisation (by the
root mean square of the embeddings over C, scaled by gamma), and a gate
1 + tanh(. + beta)::

    s_c = alpha_c * sqrt(sum_hw x_c^2 + eps)
    n_c = gamma_c * s_c / sqrt(mean_c(s_c^2) + eps)
    out = x * (1 + tanh(n_c + beta_c))

``mode='l1'`` uses s_c = alpha_c * sum_hw |x_c| and the mean |s_c| instead.
alpha starts at 1, gamma and beta at 0: at initialisation the gate is 1 and
the module is the identity. Parameters: 3C.

Registered as ``GatedCT``: the SASE paper's comparison tables use "GCT" for
the Gaussian Context Transformer (Ruan et al. 2021, ``sase_mm.GCT``); its
related work calls this module GCT-Net, and EAN builds on it.
"""
import torch
import torch.nn as nn

from ..layers.arg_checks import check_choice, check_int
from ..layers.precision import half_in_float32
from ..layers.registration import register_model


@register_model
class GatedCT(nn.Module):
    """Gated Channel Transformation.

    Args:
        in_channels (int): C of the input (B, C, H, W).
        epsilon (float): eps inside the roots (1e-5).
        mode (str): ``'l2'`` (default) or ``'l1'`` embedding.
        after_relu (bool): in l1 mode, skip the abs (input non-negative).
    """
    _abbr_ = 'gated_ct'
    MODES = ('l2', 'l1')

    def __init__(self, in_channels: int, epsilon: float = 1e-5,
                 mode: str = 'l2', after_relu: bool = False):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        self.mode = check_choice('mode', mode, self.MODES)
        if not epsilon > 0:
            raise ValueError(f'epsilon must be > 0, got {epsilon!r}')
        self.epsilon, self.after_relu = epsilon, after_relu
        self.alpha = nn.Parameter(torch.ones(1, in_channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, in_channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, in_channels, 1, 1))

    @half_in_float32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        eps = self.epsilon
        if self.mode == 'l2':
            emb = (x.square().sum((2, 3), keepdim=True) + eps).sqrt()
            emb = emb * self.alpha
            norm = self.gamma * torch.rsqrt(
                emb.square().mean(dim=1, keepdim=True) + eps)
        else:
            ax = x if self.after_relu else x.abs()
            emb = ax.sum((2, 3), keepdim=True) * self.alpha
            norm = self.gamma / (emb.abs().mean(dim=1, keepdim=True) + eps)
        return x * (1. + torch.tanh(emb * norm + self.beta))

    def extra_repr(self):
        return (f'in_channels={self.in_channels}, mode={self.mode!r}, '
                f'epsilon={self.epsilon}')
