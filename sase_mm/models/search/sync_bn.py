"""Synchronised BatchNorm for the DARTS search, on CPU (gloo) as on GPU.

SASE (arXiv 2411.08333) searches with DARTS on small batches split over
processes. With ordinary BatchNorm every process normalises with the
statistics of its own part of the batch, so N processes with batch B do not
compute what one process with batch N * B computes (measured on the digits
search: two of six edges picked another operation). torch's
``nn.SyncBatchNorm`` fixes that on GPUs only. :class:`SearchSyncBatchNorm`
does it on any device: the per-channel sums of x and x^2 and the count are
summed over all processes with a differentiable all-reduce
(``torch.distributed.nn.functional.all_reduce``), so both the statistics and
their gradients are those of the global batch; the running statistics are
updated from the global batch, as one process would.

Every forward pass of a training-mode BN all-reduces, so every process must
run the same passes in the same order: the search model does (its alpha and
weight steps are identical on all ranks). Out of training mode, or in one
process, it is ``nn.BatchNorm2d``.
"""
import torch
import torch.distributed as dist
import torch.nn as nn


def _world() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


class SearchSyncBatchNorm(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics span all processes.

    Same parameters, buffers and state_dict keys as the BatchNorm it
    replaces (:func:`convert_sync_bn`). Input (B, C, H, W).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.track_running_stats) or \
                _world() == 1:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce
        c = x.shape[1]
        local = torch.cat([x.sum(dim=(0, 2, 3)),
                           (x * x).sum(dim=(0, 2, 3)),
                           x.new_full((1, ), x.numel() / c)])
        total = all_reduce(local)  # differentiable: gradients are global
        n = total[-1]
        mean = total[:c] / n
        var = (total[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = self.momentum
        if momentum is None:  # cumulative moving average
            momentum = 1.0 / float(self.num_batches_tracked)
        with torch.no_grad():
            unbiased = var * (n / (n - 1).clamp_min(1))
            self.running_mean.lerp_(mean.to(self.running_mean.dtype),
                                    momentum)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype),
                                   momentum)
        shape = (1, c, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = torch.addcmul(self.bias.view(shape), y,
                              self.weight.view(shape))
        return y


def convert_sync_bn(module: nn.Module) -> nn.Module:
    """Replaces every ``nn.BatchNorm2d`` of ``module`` (in place) by a
    :class:`SearchSyncBatchNorm` with the same parameters and buffers (the
    same tensors, so shared alphas and optimizers are unaffected)."""
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            # A subclass adding no state: the same object, parameters and
            # buffers, with the synchronised forward.
            m.__class__ = SearchSyncBatchNorm
    return module
