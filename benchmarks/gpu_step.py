"""Training-step speed of SASE on one GPU, AMP off and on (issue 10).

SASE (arXiv 2411.08333). Synthetic data; every ratio is of candidates timed
interleaved in one run (``interleave.py``), median of the repeats, with
``torch.cuda.synchronize()`` around each step. For AMP off (float32) and on
(``torch.autocast`` float16 + ``GradScaler``, or ``--amp-dtype bfloat16``)
it prints images/s and peak memory (``torch.cuda.max_memory_allocated``
during one step) of:

* the ResNet-50 training step, batch 64 x 3 x 224 x 224 (forward,
  cross-entropy, backward, SGD): ``plain``, ``+SE``, ``+SASE``;
* a Faster R-CNN R50-FPN training step (2 x 3 x 800 x 800 images, 3 boxes
  each; ``--det-size``): ``plain``, ``+SASE``;
* the CIFAR ResNet-20 step (batch 128): ``plain`` and the supernet
  (``SASESearch`` in every block), and the first- and second-order search
  iterations (``DARTSSearch.train_step``).

Targets (AMP on): SASE-R50 <= 1.15x SE-R50 and <= 1.25x plain; supernet <=
3x plain R20; second-order iteration <= 5.1x the supernet step.

Without a CUDA device it says so and exits 0.

    python benchmarks/gpu_step.py [--repeats 10] [--amp-dtype float16]
"""
import argparse
import os
import statistics
import sys

import torch

TARGETS = dict(sase_vs_se=1.15, sase_vs_plain=1.25, supernet_vs_plain=3.0,
               second_vs_supernet=5.1)


def _sync_timed(fn):
    def run():
        torch.cuda.synchronize()
        start, end = (torch.cuda.Event(enable_timing=True),
                      torch.cuda.Event(enable_timing=True))
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3
    return run


def _peak(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _classifier_step(model, x, y, amp, dtype):
    import torch.nn.functional as F
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler('cuda', enabled=amp and
                                  dtype == torch.float16)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast('cuda', dtype=dtype, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return step


def resnet50_candidates(batch, amp, dtype):
    from backbone_step import Net  # ResNet-50 + pooling + fc, as on CPU

    x = torch.randn(batch, 3, 224, 224, device='cuda')
    y = torch.randint(0, 1000, (batch, ), device='cuda')
    cfgs = dict(plain=None, se=dict(type='sase_mm.SE'),
                sase=dict(type='sase_mm.SASE'))
    return {k: _classifier_step(Net(c).cuda().train(), x, y, amp, dtype)
            for k, c in cfgs.items()}, batch


def detector_candidates(size, amp, dtype):
    from mmengine.config import Config
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    from mmengine.registry import init_default_scope
    from search_step import _detector_batch
    from sase_mm.registry import MODELS
    init_default_scope('mmdet')
    cfg = Config.fromfile('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
    g = torch.Generator().manual_seed(0)
    data = _detector_batch(g, n=2, size=size)
    cands = {}
    for name, plugins in (('plain', None), ('sase', [dict(
            cfg=dict(type='sase_mm.SASE'), position='after_conv3')])):
        model_cfg = cfg.model.copy()
        model_cfg.backbone = dict(model_cfg.backbone, plugins=plugins,
                                  init_cfg=None)
        model = MODELS.build(model_cfg).cuda().train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        wrapper = (AmpOptimWrapper(optimizer=opt, dtype=dtype) if amp else
                   OptimWrapper(optimizer=opt))
        cands[name] = (lambda m=model, w=wrapper: m.train_step(data, w))
    return cands, 2


def search_candidates(batch, amp, dtype):
    from mmengine.optim import AmpOptimWrapper, OptimWrapper, \
        OptimWrapperDict
    from search_step import _batch, training_step
    from sase_mm.registry import MODELS
    g = torch.Generator().manual_seed(0)
    data = {k: {n: t.cuda() for n, t in _batch(batch, g).items()}
            for k in ('train', 'search')}
    x, y = data['train']['inputs'], data['train']['data_samples']

    def search(order):
        torch.manual_seed(0)
        model = MODELS.build(dict(
            type='sase_mm.DARTSSearch', order=order,
            supernet=dict(type='sase_mm.CifarResNet', depth=20,
                          attn_cfg=dict(type='sase_mm.SASESearch'))))
        model = model.cuda().train()
        sgd = torch.optim.SGD(model.supernet.parameters(), lr=0.025,
                              momentum=0.9, weight_decay=5e-4)
        weights = (AmpOptimWrapper(optimizer=sgd, dtype=dtype) if amp else
                   OptimWrapper(optimizer=sgd))
        optim = OptimWrapperDict(weights=weights, alphas=OptimWrapper(
            torch.optim.Adam([model.alphas], lr=3e-4)))
        return lambda: model.train_step(data, optim), model

    first, net1 = search(1)
    second, _ = search(2)
    plain = MODELS.build(dict(type='sase_mm.CifarResNet',
                              depth=20)).cuda().train()
    plain_step = training_step(plain, x, y)
    supernet_step = training_step(net1.supernet, x, y,
                                  lambda: net1.alphas.detach().softmax(-1))

    def under_amp(fn):
        def run():
            with torch.autocast('cuda', dtype=dtype, enabled=amp):
                fn()
        return run
    return dict(plain=under_amp(plain_step),
                supernet=under_amp(supernet_step),
                first=first, second=second), batch


def report(title, cands, n_images, reps):
    from interleave import interleaved
    times = interleaved({k: _sync_timed(f) for k, f in cands.items()}, reps,
                        warmup=2)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f'\n{title}')
    for k, f in cands.items():
        print(f'  {k:>9}: {med[k] * 1e3:8.1f} ms  {n_images / med[k]:8.1f} '
              f'images/s  peak {_peak(f):8.0f} MiB')
    return med


def _ratio(name, a, b, target=None):
    r = a / b
    mark = '' if target is None else (
        f'  (target <= {target}: {"met" if r <= target else "MISSED"})')
    print(f'  {name}: {r:.3f}x{mark}')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--search-batch', type=int, default=128)
    parser.add_argument('--det-size', type=int, default=800)
    parser.add_argument('--amp-dtype', choices=('float16', 'bfloat16'),
                        default='float16')
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print('gpu_step: no CUDA device; nothing measured (run it on a GPU '
              'machine).')
        return 0
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    sys.path.insert(0, os.path.dirname(here))
    import sase_mm  # noqa: F401
    torch.backends.cudnn.benchmark = True
    dtype = getattr(torch, args.amp_dtype)
    print(f'device: {torch.cuda.get_device_name()}, torch {torch.__version__}')
    for amp in (False, True):
        tag = f'AMP {args.amp_dtype}' if amp else 'AMP off (float32)'
        r50 = report(f'ResNet-50 step, batch {args.batch}x224x224, {tag}',
                     *resnet50_candidates(args.batch, amp, dtype),
                     args.repeats)
        _ratio('SASE / SE', r50['sase'], r50['se'],
               TARGETS['sase_vs_se'] if amp else None)
        _ratio('SASE / plain', r50['sase'], r50['plain'],
               TARGETS['sase_vs_plain'] if amp else None)
        det = report(f'Faster R-CNN R50-FPN step, 2x{args.det_size}^2, {tag}',
                     *detector_candidates(args.det_size, amp, dtype),
                     args.repeats)
        _ratio('SASE / plain', det['sase'], det['plain'])
        s = report(f'ResNet-20 search, batch {args.search_batch}, {tag}',
                   *search_candidates(args.search_batch, amp, dtype),
                   args.repeats)
        _ratio('supernet / plain', s['supernet'], s['plain'],
               TARGETS['supernet_vs_plain'] if amp else None)
        _ratio('first / supernet', s['first'], s['supernet'])
        _ratio('second / supernet', s['second'], s['supernet'],
               TARGETS['second_vs_supernet'] if amp else None)
        torch.cuda.empty_cache()
    return 0


if __name__ == '__main__':
    sys.exit(main())
