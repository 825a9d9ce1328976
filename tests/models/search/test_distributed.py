"""The DARTS search on two processes (gloo, CPU) vs one (SASE,
arXiv 2411.08333): every rank ends with the same alpha and weights, equal to
a single-process run on the same global batch.

BatchNorm is put in eval mode in both runs: with batch statistics, two
half-batches are not one global batch (that would need SyncBN), while
everything else in the loss is a mean over samples."""
import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HERE = os.path.dirname(os.path.abspath(__file__))
ITERS = 3


def _global_batches():
    g = torch.Generator().manual_seed(7)
    out = []
    for _ in range(ITERS):
        out.append({
            k: dict(inputs=torch.randn(8, 3, 8, 8, generator=g,
                                       dtype=torch.float64),
                    data_samples=torch.randint(0, 10, (8, ), generator=g))
            for k in ('train', 'search')
        })
    return out


def _run(rank, world, batches, sync_bn=False):
    sys.path.insert(0, HERE)
    from tiny_supernets import build_tiny, make_optim
    torch.set_num_threads(1)
    model = build_tiny(order=2, dtype=torch.float64, seed=0, sync_bn=sync_bn)
    if sync_bn:
        model.train()  # batch statistics, synchronised over the ranks
    else:
        model.eval()  # BN on running statistics: a batch-separable loss
    optim = make_optim(model, lr=0.1, clip=5)
    n = 8 // world
    for batch in batches:
        local = {k: {f: t[rank * n:(rank + 1) * n] for f, t in b.items()}
                 for k, b in batch.items()}
        model.train_step(local, optim)
    return model


def _worker(rank, world, port, out_dir, sync_bn=False):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world)
    try:
        model = _run(rank, world, _global_batches(), sync_bn)
        torch.save({k: v.detach().clone()
                    for k, v in model.state_dict().items()},
                   os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_ranks_equal_one_rank_on_global_batch(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2,
             join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pth') for r in range(2)]
    single = _run(0, 1, _global_batches()).state_dict()
    alpha0 = torch.load(tmp_path / 'rank0.pth')['alphas']
    assert not torch.allclose(alpha0, torch.zeros_like(alpha0))
    for key in single:
        # identical on both ranks ...
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        # ... and equal to one process on the global batch
        assert torch.allclose(ranks[0][key], single[key], atol=1e-9,
                              rtol=1e-7), key


def test_sync_bn_two_ranks_equal_one_rank_in_train_mode(tmp_path):
    """With sync_bn, BN in train mode: 2 ranks x 4 images = 1 rank x 8."""
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), True), nprocs=2,
             join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pth') for r in range(2)]
    single = _run(0, 1, _global_batches(), sync_bn=True).state_dict()
    assert ranks[0].keys() == single.keys()
    for key in single:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        assert torch.allclose(ranks[0][key], single[key], atol=1e-6,
                              rtol=1e-6), key
    diff = (ranks[0]['alphas'] - single['alphas']).abs().max()
    assert diff < 1e-6
    assert 'running_mean' in ' '.join(single)  # BN statistics compared too
