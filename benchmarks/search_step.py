"""Cost of a SASE search step (arXiv 2411.08333, docs/spec.md section 3).

CIFAR ResNet-20, batch 64 x 3 x 32 x 32, 2 CPU threads. Candidates, timed
interleaved in one run (median of the repeats):

* ``plain``: one training step (forward, backward, SGD) of ResNet-20;
* ``supernet``: the same step of ResNet-20 + SASESearch in every block
  (mixing weights fixed);
* ``first``: one first-order search iteration (alpha step + weight step:
  2 forward-backward passes, the alpha pass differentiating alpha only);
* ``second``: one second-order iteration (virtual step, search pass at w',
  two finite-difference passes, weight step: 5 forward-backward passes);
* ``fixed``: the training step of ResNet-20 + the paper's fixed SASE block
  (docs/spec.md section 4) in every block, what a study of the searched
  block trains;
* ``se``: the same with SE (reduction 16), for reference.

Printed ratios and targets: supernet / plain <= 2.5 (the reference code:
6.8); first / supernet <= 2.0 and second / supernet <= 5.0 (reference:
2.02 and 5.02); peak memory second / first <= 1.3; fixed / plain <= 1.2;
se / plain is printed beside it, without a target.

Peak memory is the process's resident-set high-water mark during one step
above its resident size just before it (Linux: the mark is reset through
``/proc/self/clear_refs`` before each step and read from ``VmHWM`` in
``/proc/self/status``), median over the repeats. It is measured in a second
process (``--memory``) started with ``MALLOC_MMAP_THRESHOLD_=65536``, so
that glibc serves every block of 64 KiB or more with its own mapping and
unmaps it when freed (otherwise its adaptive threshold keeps freed
activations resident and the mark accumulates over the passes of a step):
the mark then follows the live tensors; small blocks and the Python heap
count too, alike for every candidate. That setting slows allocation down,
so the times are taken in the first process, without it. (torch.profiler's
memory events would count tensors only, but profiling the ~100k operator
calls of a second-order step takes minutes.)

    python benchmarks/search_step.py [--repeats 5] [--batch 64]

``--depth`` and ``--size`` time another CIFAR ResNet and image size (the
targets are set for the defaults, ResNet-20 at 32 x 32); the demo's
search: ``--depth 8 --size 16 --batch 32``.

``--detector``: the search around an mmdet detector (docs/
search_your_model.md): Faster R-CNN R50-FPN with SASESearch in every
bottleneck (``configs/search/sase_faster_rcnn_r50_fpn_coco.py``'s model),
2 x 3 x 256 x 256 images with 3 boxes each. Candidates: ``plain``, one
training step of that detector (the search's weight step: forward of the
RPN and ROI losses, backward, SGD; mixing weights fixed), ``first`` and
``second`` as above. Targets: first / plain <= 2.2, second / plain <= 5.5
(times only).

    python benchmarks/search_step.py --detector [--repeats 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from os import path as osp

import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper, OptimWrapperDict

import sase_mm  # noqa: F401
from interleave import interleaved, timed
from sase_mm.models.sase import mixing
from sase_mm.registry import MODELS

TARGETS = dict(supernet_vs_plain=2.5, first_vs_supernet=2.0,
               second_vs_supernet=5.0, second_vs_first_memory=1.3,
               fixed_vs_plain=1.2, se_vs_plain=None)
DETECTOR_TARGETS = dict(first_vs_plain=2.2, second_vs_plain=5.5)
DETECTOR_CONFIG = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                           'configs', 'search',
                           'sase_faster_rcnn_r50_fpn_coco.py')


def _batch(n, g, size=32):
    return dict(inputs=torch.randn(n, 3, size, size, generator=g),
                data_samples=torch.randint(0, 10, (n, ), generator=g))


def _search_model(order, depth=20, size=32):
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='sase_mm.DARTSSearch', order=order,
        supernet=dict(type='sase_mm.CifarResNet', depth=depth,
                      input_size=size,
                      attn_cfg=dict(type='sase_mm.SASESearch'))))
    optim = OptimWrapperDict(
        weights=OptimWrapper(torch.optim.SGD(
            model.supernet.parameters(), lr=0.025, momentum=0.9,
            weight_decay=5e-4), clip_grad=dict(max_norm=5)),
        alphas=OptimWrapper(torch.optim.Adam([model.alphas], lr=3e-4,
                                             betas=(0.5, 0.999),
                                             weight_decay=1e-3)))
    return model.train(), optim


def training_step(model, x, y, weights_fn=None):
    """One training step of ``model`` on (x, y): the definition every
    benchmark of a ResNet-20 step shares.

    Forward, cross-entropy, backward, and an SGD step (lr 0.025, momentum
    0.9) on the model's parameters, gradients cleared first (set to None).
    ``weights_fn()`` gives the (6, 7) mixing weights of a supernet: as in
    the search's weight step, ``softmax(alpha)`` detached, so the backward
    pass does not reach alpha.
    """
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9)

    def step():
        opt.zero_grad()
        if weights_fn is None:
            out = model(x)
        else:  # bound for the pass, as the search's weight step does
            with mixing(model.arch_alphas, weights_fn()):
                out = model(x)
        F.cross_entropy(out, y).backward()
        opt.step()

    return step


def _attention_net(attn_cfg, depth=20, size=32):
    """ResNet-``depth`` with ``attn_cfg`` after the last BN of every block,
    in training mode (the weights of seed 0)."""
    torch.manual_seed(0)
    return MODELS.build(dict(type='sase_mm.CifarResNet', depth=depth,
                             input_size=size,
                             attn_cfg=attn_cfg)).train()


def build_candidates(batch, fixed=False, se=False, depth=20, size=32):
    """The timed steps: ``plain``, ``supernet``, ``first``, ``second``
    (and, when asked, ``fixed``: ResNet-20 + the paper's SASE block;
    ``se``: ResNet-20 + SE)."""
    g = torch.Generator().manual_seed(0)
    data = dict(train=_batch(batch, g, size), search=_batch(batch, g, size))
    x, y = data['train']['inputs'], data['train']['data_samples']
    plain = _attention_net(None, depth, size)
    net1, opt1 = _search_model(1, depth, size)
    net2, opt2 = _search_model(2, depth, size)
    cands = dict(
        plain=training_step(plain, x, y),
        supernet=training_step(net1.supernet, x, y,
                               lambda: net1.alphas.detach().softmax(-1)))
    if fixed:
        cands['fixed'] = training_step(
            _attention_net(dict(type='sase_mm.SASE'), depth, size), x, y)
    if se:
        cands['se'] = training_step(
            _attention_net(dict(type='sase_mm.SE'), depth, size), x, y)
    cands.update(first=lambda: net1.train_step(data, opt1),
                 second=lambda: net2.train_step(data, opt2))
    return cands


def _detector_batch(g, n=2, size=256):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, size, size), generator=g,
                                    dtype=torch.uint8))
        xy = torch.rand(3, 2, generator=g) * size * 0.6
        wh = 16 + torch.rand(3, 2, generator=g) * size * 0.3
        sample = DetDataSample(metainfo=dict(
            img_shape=(size, size), ori_shape=(size, size),
            scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, (xy + wh).clamp(max=size)], dim=1),
            labels=torch.randint(0, 80, (3, ), generator=g))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def build_detector_candidates():
    """``plain`` (the detector's training step), ``first``, ``second``."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(DETECTOR_CONFIG)
    init_default_scope('mmdet')
    g = torch.Generator().manual_seed(0)
    data = dict(train=_detector_batch(g), search=_detector_batch(g))
    cands = {}
    for order in (1, 2):
        torch.manual_seed(0)
        model = MODELS.build(dict(cfg.model, order=order)).train()
        optim = OptimWrapperDict(
            weights=OptimWrapper(torch.optim.SGD(
                # (lr of mmdet's warm-up: at 0.02 the virtual step of a
                # randomly initialised detector overflows; times do not
                # depend on it)
                model.supernet.parameters(), lr=1e-3, momentum=0.9,
                weight_decay=1e-4)),
            alphas=OptimWrapper(torch.optim.Adam([model.alphas], lr=3e-4,
                                                 betas=(0.5, 0.999))))
        if order == 1:
            def plain(model=model, optim=optim):
                train, _ = model._prepare(data)
                model.weight_step(train, optim['weights'])
            cands['plain'] = plain
        cands['first' if order == 1 else 'second'] = (
            lambda model=model, optim=optim: model.train_step(data, optim))
    return cands


def detector_main(args):
    cands = build_detector_candidates()
    times = interleaved({k: timed(fn) for k, fn in cands.items()},
                        args.repeats, warmup=1)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f'Faster R-CNN R50-FPN + SASESearch, 2 x 3 x 256 x 256, '
          f'{args.threads} threads, median of {args.repeats}')
    for k in cands:
        print(f'{k:<10} {med[k]:>9.3f} s')
    ratios = dict(first_vs_plain=med['first'] / med['plain'],
                  second_vs_plain=med['second'] / med['plain'])
    for k, v in ratios.items():
        ok = 'ok' if v <= DETECTOR_TARGETS[k] else 'MISSED'
        print(f'{k:<24} {v:6.2f}x  (target <= {DETECTOR_TARGETS[k]}x: '
              f'{ok})')
    return ratios


def _status(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f'{field} not in /proc/self/status (Linux only)')


def peak_bytes(fn):
    """Resident high-water mark of fn() above the resident size before."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # resets VmHWM to the current VmRSS
    base = _status('VmRSS')
    fn()
    return _status('VmHWM') - base


def _memory_in_subprocess(args):
    """Peak bytes per candidate, from a child with glibc's fixed threshold."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), '--memory',
         '--repeats', str(args.repeats), '--batch', str(args.batch),
         '--threads', str(args.threads), '--depth', str(args.depth),
         '--size', str(args.size)], env=env, check=True,
        capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--depth', type=int, default=20,
                        help='CIFAR ResNet depth (6n + 2; the demo: 8)')
    parser.add_argument('--size', type=int, default=32,
                        help='image size (the demo: 16)')
    parser.add_argument('--memory', action='store_true',
                        help='(internal) print peak memory as JSON')
    parser.add_argument('--detector', action='store_true',
                        help='the Faster R-CNN R50-FPN supernet instead')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.detector:
        return detector_main(args)
    cands = build_candidates(args.batch, fixed=True, se=True,
                             depth=args.depth, size=args.size)
    for fn in cands.values():  # warm-up
        fn()
    if args.memory:
        mems = interleaved({k: (lambda fn=fn: peak_bytes(fn))
                            for k, fn in cands.items()}, args.repeats)
        print(json.dumps({k: statistics.median(v) for k, v in mems.items()}))
        return None
    times = interleaved({k: timed(fn) for k, fn in cands.items()},
                        args.repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    mem = _memory_in_subprocess(args)
    print(f'CIFAR ResNet-{args.depth}, batch {args.batch} x 3 x '
          f'{args.size} x {args.size}, {args.threads} threads, median of '
          f'{args.repeats}')
    print(f'{"candidate":<10} {"time (s)":>9} {"peak MiB":>9}')
    for k in cands:
        print(f'{k:<10} {med[k]:>9.3f} {mem[k] / 2**20:>9.1f}')
    ratios = dict(
        supernet_vs_plain=med['supernet'] / med['plain'],
        first_vs_supernet=med['first'] / med['supernet'],
        second_vs_supernet=med['second'] / med['supernet'],
        second_vs_first_memory=mem['second'] / mem['first'],
        fixed_vs_plain=med['fixed'] / med['plain'],
        se_vs_plain=med['se'] / med['plain'])
    for k, v in ratios.items():
        print(f'{k:<24} {v:6.2f}x  ({_verdict(v, TARGETS[k])})')
    return ratios


def _verdict(ratio, target):
    """'target <= Tx: ok' / 'MISSED', or 'reference' without a target."""
    if target is None:
        return 'reference, no target'
    return f'target <= {target}x: {"ok" if ratio <= target else "MISSED"}'


if __name__ == '__main__':
    main()
