"""The divergence guard of the DARTS search: stop, or skip, on NaN and inf.

SASE (arXiv 2411.08333) searches with DARTS (Liu et al., ICLR 2019). A
search whose loss turns NaN (a learning rate too high, an fp16 overflow)
otherwise runs to the end and writes a genotype from NaN alphas: the argmax
of NaN is the first operation of every edge, which looks like a result. The
search model checks, after each step, the three values that decide it: the
alpha step's loss on the search batch and its gradient, the alphas after the
step, and the weight step's loss.

Two policies (``DARTSSearch(nan_policy=...)``):

* ``'stop'`` (default): raise :class:`SearchDiverged`, naming the value; the
  loop adds the iteration and the last good checkpoint.
* ``'skip_step'``: skip the step whose value is not finite, as AMP's loss
  scaler does (the alphas are restored if the step made them non-finite),
  and raise all the same after ``max_skips`` consecutive skipped
  iterations.
"""
from typing import Callable, Optional

import torch

POLICIES = ('stop', 'skip_step')
FIXES = ('lower the learning rate (optim_wrapper.weights.optimizer.lr or '
         'optim_wrapper.alphas.optimizer.lr), clip the gradients '
         '(optim_wrapper.weights.clip_grad=dict(max_norm=5)), or with --amp '
         'keep the dynamic loss scaler (loss_scale=\'dynamic\')')


class SearchDiverged(RuntimeError):
    """A non-finite loss, gradient or alpha in the search; nothing written."""


def is_finite(t: torch.Tensor) -> bool:
    """Whether every element of ``t`` is finite (one reduction)."""
    return bool(torch.isfinite(t).all())


class DivergenceGuard:
    """Counts and acts on non-finite values of one search.

    Args:
        policy (str): ``'stop'`` or ``'skip_step'``.
        max_skips (int): with ``'skip_step'``, consecutive skipped
            iterations after which the search stops all the same.
    """

    def __init__(self, policy: str = 'stop', max_skips: int = 3):
        if policy not in POLICIES:
            raise ValueError(f'nan_policy must be one of {POLICIES}, got '
                             f'{policy!r}')
        if not isinstance(max_skips, int) or max_skips < 1:
            raise ValueError(f'max_nan_skips must be an int >= 1, got '
                             f'{max_skips!r}')
        self.policy, self.max_skips = policy, max_skips
        self.consecutive = 0
        self.skipped_this_step = False

    def start_step(self) -> None:
        self.skipped_this_step = False

    def check(self, value: torch.Tensor, what: str) -> bool:
        """True when ``value`` is finite; otherwise stops (policy 'stop', or
        too many skips) or returns False (the caller skips its step)."""
        if is_finite(value):
            return True
        bad = 'NaN' if bool(torch.isnan(value).any()) else 'inf'
        if self.policy == 'stop':
            raise SearchDiverged(f'{what} is {bad}')
        self.skipped_this_step = True
        if self.consecutive + 1 >= self.max_skips:
            raise SearchDiverged(
                f'{what} is {bad}, and {self.max_skips} consecutive '
                f'iterations were skipped (nan_policy=\'skip_step\', '
                f'max_nan_skips={self.max_skips})')
        return False

    def end_step(self) -> None:
        self.consecutive = self.consecutive + 1 if self.skipped_this_step \
            else 0


def guarded_alpha_step(guard: DivergenceGuard, alphas: torch.nn.Parameter,
                       step: Callable[[], None]) -> None:
    """Runs ``step`` (which updates ``alphas``); if the alphas come out
    non-finite, restores them (policy 'skip_step') or stops."""
    before: Optional[torch.Tensor] = None
    if guard.policy == 'skip_step':
        before = alphas.detach().clone()
    step()
    if not guard.check(alphas.detach(), 'alpha after the alpha step'):
        with torch.no_grad():
            alphas.copy_(before)
