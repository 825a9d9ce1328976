"""Scalar logs as mmengine's LocalVisBackend writes them, in the layout a
Runner uses, for the curve tests (SASE, arXiv 2411.08333)."""
import os.path as osp

EPOCHS, ITERS = 3, 5  # iterations per epoch; logged every 2 and at the end


def write_search_log(work_dir, timestamp='20240101_000000', by_epoch=True):
    """A search's scalars.json: training lines (epoch, iter, loss,
    loss_search, lr, time), then per epoch the alpha and validation lines,
    as LoggerHook / GenotypeHook write them."""
    from mmengine.visualization import LocalVisBackend
    backend = LocalVisBackend(save_dir=osp.join(work_dir, timestamp,
                                                'vis_data'))
    it = 0
    for epoch in range(1, EPOCHS + 1):
        for inner in range(1, ITERS + 1):
            it += 1
            if inner % 2 and inner != ITERS:
                continue
            line = {'weights.lr': 0.05, 'loss': 3.0 / it,
                    'loss_search': 2.5 / it + 0.1, 'time': 0.1 * epoch,
                    'data_time': 0.01, 'iter': it}
            if by_epoch:
                line['epoch'] = epoch
            backend.add_scalars(line, step=it)
        backend.add_scalars({'alpha/channel_squeeze/gap': 0.1 + 0.01 * epoch},
                            step=epoch if by_epoch else it)
        backend.add_scalars({'accuracy/top1': 20.0 * epoch, 'time': 0.5},
                            step=epoch if by_epoch else it)
    return osp.join(work_dir, timestamp, 'vis_data', 'scalars.json')
