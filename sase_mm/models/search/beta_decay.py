"""Beta-Decay regularisation of alpha, an option beyond the paper.

beta-DARTS: Beta-Decay Regularization for Differentiable Architecture Search
(Ye et al., CVPR 2022), applied to the SASE search (arXiv 2411.08333,
docs/search_options.md). The alpha step minimises

    L_val(w', alpha) + lambda_t * (1 / E) * sum_e logsumexp(alpha_e)

over the E = 6 edges. The gradient of the term is
``lambda_t / E * softmax(alpha_e)`` per edge: it pulls every alpha down in
proportion to its own mixing weight, so the values of the activated
architecture weights (and their spread) stay bounded, and the search depends
less on how long it runs. ``lambda_t`` grows linearly with the epoch,
``lambda_t = weight * epoch / max_epochs``, from 0 at the start (the
authors' schedule, with ``weight = 50`` over 100 epochs, 0.5 per epoch).

The term is a function of alpha alone, so it is added to the architecture
gradient of the first- or second-order step; the weights never see it.
"""
from typing import Optional, Tuple

import torch

from ..sase.mixing import softmax_mix


class BetaDecay:
    """The Beta-Decay term of one search.

    Args:
        weight (float): lambda at the end of the search (``max_epochs``),
            >= 0; 0 adds nothing.
    """

    def __init__(self, weight: float):
        if isinstance(weight, bool) or not isinstance(
                weight, (int, float)) or not weight >= 0 or \
                weight == float('inf'):
            raise ValueError(f'beta_decay.weight must be a finite number '
                             f'>= 0 (lambda at the last epoch; beta-DARTS '
                             f'uses 50 over 100 epochs), got {weight!r}')
        self.weight = float(weight)

    @classmethod
    def build(cls, cfg: Optional[dict]) -> Optional['BetaDecay']:
        """From a config ``dict(weight=...)``; None stays None (off)."""
        if cfg is None:
            return None
        if not isinstance(cfg, dict) or set(cfg) - {'weight'} or \
                'weight' not in cfg:
            raise ValueError(f'beta_decay must be None or dict(weight=...) '
                             f'(lambda at the last epoch), got {cfg!r}')
        return cls(cfg['weight'])

    def coefficient(self, progress: float) -> float:
        """lambda at ``progress`` = epoch / max_epochs, in [0, 1]."""
        return self.weight * min(max(float(progress), 0.0), 1.0)

    def penalty(self, alphas: torch.Tensor, progress: float
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The term and its gradient in alpha.

        Args:
            alphas: (6, 7) architecture weights.
            progress: epoch / max_epochs of the current iteration.

        Returns:
            (the scalar penalty, detached; its (6, 7) gradient).
        """
        lam = self.coefficient(progress)
        with torch.no_grad():
            a = alphas.detach()
            if a.dtype in (torch.float16, torch.bfloat16):
                a = a.float()
            value = lam * torch.logsumexp(a, dim=-1).mean()
            grad = (lam / a.shape[0]) * softmax_mix(a)
        return value, grad.to(alphas.dtype)
