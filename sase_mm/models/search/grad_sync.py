"""Gradient averaging across processes for the DARTS search.

SASE (arXiv 2411.08333) searches with DARTS (Liu et al., ICLR 2019). Its
iteration takes gradients with ``torch.autograd.grad`` and several forward
passes per step, which DistributedDataParallel's backward hooks do not see,
so the search model averages what it needs explicitly: every rank then holds
the same alpha and the same weights, and a run on N ranks with batch B each
equals a single-process run on the N * B global batch (for batch-separable
losses).
"""
from typing import List, Sequence

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of processes (1 when torch.distributed is not initialised)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def all_reduce_mean(tensors: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Averages tensors over all ranks with one flat all-reduce.

    Args:
        tensors: any shapes; not modified.

    Returns:
        New tensors, same shapes, holding the mean over ranks (the inputs
        themselves when running in one process).
    """
    tensors = list(tensors)
    n = world_size()
    if n == 1 or not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat.div_(n)
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()
    return out


def all_reduce_grads_(params: Sequence[torch.Tensor]) -> None:
    """Averages ``p.grad`` over ranks in place (no-grad params skipped)."""
    grads = [p.grad for p in params if p.grad is not None]
    if world_size() == 1 or not grads:
        return
    for g, avg in zip(grads, all_reduce_mean(grads)):
        g.copy_(avg)
