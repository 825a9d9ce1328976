"""Training-step speed of SASE on one GPU: float32, AMP float16 and bfloat16.

SASE (arXiv 2411.08333). Synthetic data; the candidates of a part are timed
interleaved in one run (``interleave.py``: every repetition runs each once,
in alternating order), with CUDA events around each step, and compared by
their medians. For each precision (``--precision``; ``float16`` and
``bfloat16`` are ``torch.autocast`` with the weights in float32, float16
with a loss scaler) it measures ms per step, images/s and the peak memory
of one step (``torch.cuda.max_memory_allocated`` above what was allocated
before it) of the parts (``--parts``):

* ``r50``: the ResNet-50 training step (``SASEResNet(depth=50)``, global
  average pooling, a 2048 x 1000 fc; cross-entropy, backward, SGD), batch
  ``--batch`` x 3 x 224 x 224: ``plain``, ``se`` (SENet's block,
  ``sase_mm.SE``) and ``sase`` (``sase_mm.SASE``, the paper's block) after
  every bottleneck;
* ``r20``: the CIFAR ResNet-20 step, batch ``--search-batch`` x 3 x 32 x
  32, with the search's optimizers (SGD 0.025, momentum 0.9, weight decay
  5e-4, gradient clip 5; Adam 3e-4 for alpha): ``plain`` (the network
  without attention), ``supernet`` (``SASESearch`` after every block, the
  search's weight step ``DARTSSearch.weight_step``: alpha fixed),
  ``first`` and ``second`` (one first- / second-order search iteration,
  ``DARTSSearch.train_step``);
* ``compile``: the SASE-ResNet-50 step of ``r50`` in eager mode, under
  ``torch.compile`` (inductor; the time of its first step, which compiles
  forward and backward, is reported as ``compile_s``), and in eager mode
  with the model and input in ``channels_last``;
* ``detector`` (opt-in): the Faster R-CNN R50-FPN training step of
  ``configs/faster_rcnn`` (the plain baseline and SASE, no pretrained
  backbone), 2 images of ``--det-size`` squared with 3 boxes each (needs
  mmdet with mmcv's compiled ops).

Ratios, and the targets they are checked against under AMP: SASE-R50 /
SE-R50 <= 1.10 and SASE-R50 / plain <= 1.25; supernet / plain R20 <= 3;
second / supernet <= 5.1; compiled / eager <= 1 (compile at least as fast as
eager). first / supernet and channels_last / contiguous are reported.

``--json PATH`` writes the figures (and each part's status: ok, failed with
the error, or skipped with the reason) after every part, atomically, so a
run cut off keeps the parts it finished. Without a CUDA device it says so,
writes that (status skipped) and exits 0. ``--smoke`` runs every part but
``compile`` on the CPU at tiny shapes, one repetition: it checks the code
paths (the GPU check's rehearsal, ``tools/device/gpu_check.sh``), and its
figures measure nothing.

    python benchmarks/gpu_step.py [--precision float16 bfloat16 float32]
        [--parts r50 r20] [--repeats 8] [--json figures.json] [--smoke]
"""
import argparse
import copy
import importlib
import json
import os
import statistics
import sys
import time
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F

PRECISIONS = ('float16', 'bfloat16', 'float32')
PARTS = ('r50', 'r20', 'compile', 'detector')
# Checked under AMP (float16 / bfloat16) only: the ratio must not exceed it.
TARGETS = {
    'r50': dict(sase_vs_se=1.10, sase_vs_plain=1.25),
    'r20': dict(supernet_vs_plain=3.0, second_vs_supernet=5.1),
    'compile': dict(compiled_vs_eager=1.0),
}
RATIOS = {
    'r50': dict(sase_vs_se=('sase', 'se'), sase_vs_plain=('sase', 'plain'),
                se_vs_plain=('se', 'plain')),
    'r20': dict(supernet_vs_plain=('supernet', 'plain'),
                first_vs_supernet=('first', 'supernet'),
                second_vs_supernet=('second', 'supernet')),
    'compile': dict(compiled_vs_eager=('compiled', 'eager'),
                    channels_last_vs_contiguous=('eager_channels_last',
                                                 'eager')),
    'detector': dict(sase_vs_plain=('sase', 'plain')),
}
NO_CUDA = 'no CUDA device (torch.cuda.is_available() is False)'


def write_json(path, obj):
    """``obj`` as JSON at ``path``, atomically (a reader sees the old file or
    the new one, never a part)."""
    from sase_mm.utils.atomic import atomic_write_text
    atomic_write_text(path, json.dumps(obj, indent=1) + '\n')


class Clock:
    """Times a step on ``device``: CUDA events around it (after a
    synchronize) on a GPU, the wall clock on the CPU."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == 'cuda'

    def timed(self, fn):
        def run():
            if self.cuda:
                torch.cuda.synchronize()
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                return start.elapsed_time(end) / 1e3
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
        return run

    def peak_mib(self, fn):
        """Peak memory of one call of ``fn`` above what was allocated
        before it (MiB); None on the CPU."""
        if not self.cuda:
            return None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20


def _models():
    from sase_mm.registry import MODELS
    return MODELS


class Classifier(nn.Module):
    """SASEResNet-50 (mmpretrain's ResNet; ``attn_cfg=None``: the plain
    network) + global average pooling + a 2048 x 1000 fc, as
    ``backbone_step.py`` times on the CPU. Torch's default initialisation
    (mmpretrain's ``init_weights`` would zero every block's last BN)."""

    def __init__(self, attn_cfg):
        super().__init__()
        self.backbone = _models().build(dict(
            type='sase_mm.SASEResNet', depth=50, attn_cfg=attn_cfg))
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        """x (B, 3, H, W) -> logits (B, 1000)."""
        return self.fc(self.backbone(x)[-1].mean((2, 3)))


def classifier_step(model, x, y, amp_dtype):
    """One step of ``model`` on (x, y): forward and cross-entropy under
    autocast (``amp_dtype`` None: float32), backward (loss-scaled for
    float16), SGD (lr 0.01, momentum 0.9), gradients set to None first."""
    device_type = x.device.type
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device_type,
                                  enabled=amp_dtype == torch.float16)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return step


def r50_candidates(args, device, amp_dtype):
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 1000, (args.batch, ), device=device)
    cfgs = dict(plain=None, se=dict(type='sase_mm.SE'),
                sase=dict(type='sase_mm.SASE'))
    cands = {}
    for name, cfg in cfgs.items():
        torch.manual_seed(0)
        model = Classifier(cfg).to(device).train()
        cands[name] = classifier_step(model, x, y, amp_dtype)
    return cands, args.batch


def compile_candidates(args, device, amp_dtype):
    """SASE-ResNet-50: eager, ``torch.compile`` (inductor), eager in
    channels_last; the first compiled step is taken (and timed) here."""
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 1000, (args.batch, ), device=device)
    torch.manual_seed(0)
    eager = Classifier(dict(type='sase_mm.SASE')).to(device).train()
    compiled = copy.deepcopy(eager)
    last = copy.deepcopy(eager).to(memory_format=torch.channels_last)
    x_last = x.contiguous(memory_format=torch.channels_last)
    cands = dict(
        eager=classifier_step(eager, x, y, amp_dtype),
        compiled=classifier_step(torch.compile(compiled,
                                               backend=args.compile_backend),
                                 x, y, amp_dtype),
        eager_channels_last=classifier_step(last, x_last, y, amp_dtype))
    t0 = time.perf_counter()
    cands['compiled']()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    extra = dict(compile_s=time.perf_counter() - t0,
                 compile_backend=args.compile_backend)
    return cands, args.batch, extra


def _weights_wrapper(sgd, amp_dtype, device):
    """The search's weight optimizer wrapper: gradient clip 5 (the
    config's), mixed precision as ``tools/search.py --amp`` builds it."""
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    clip = dict(max_norm=5)
    if amp_dtype is None:
        return OptimWrapper(optimizer=sgd, clip_grad=clip)
    if device.type == 'cuda':
        return AmpOptimWrapper(optimizer=sgd, dtype=amp_dtype,
                               clip_grad=clip)
    # AmpOptimWrapper refuses to build without CUDA; sase_mm's CPU one
    # (registered by sase_mm.engine) is what --amp uses there.
    from mmengine.registry import OPTIM_WRAPPERS
    importlib.import_module('sase_mm.engine')
    return OPTIM_WRAPPERS.build(dict(
        type='CPUAmpOptimWrapper', optimizer=sgd, clip_grad=clip,
        dtype=str(amp_dtype).rsplit('.', 1)[-1]))


def _search_model(order, amp_dtype, device):
    from mmengine.optim import OptimWrapper, OptimWrapperDict
    torch.manual_seed(0)
    model = _models().build(dict(
        type='sase_mm.DARTSSearch', order=order,
        supernet=dict(type='sase_mm.CifarResNet', depth=20,
                      attn_cfg=dict(type='sase_mm.SASESearch'))))
    model = model.to(device).train()
    sgd = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9,
                          weight_decay=5e-4)
    adam = torch.optim.Adam(model.arch_parameters(), lr=3e-4,
                            betas=(0.5, 0.999), weight_decay=1e-3)
    return model, OptimWrapperDict(
        weights=_weights_wrapper(sgd, amp_dtype, device),
        alphas=OptimWrapper(optimizer=adam))


def r20_candidates(args, device, amp_dtype):
    g = torch.Generator().manual_seed(0)
    data = {k: dict(inputs=torch.randn(args.search_batch, 3, 32, 32,
                                       generator=g).to(device),
                    data_samples=torch.randint(0, 10, (args.search_batch, ),
                                               generator=g).to(device))
            for k in ('train', 'search')}
    train = data['train']
    torch.manual_seed(0)
    plain = _models().build(dict(type='sase_mm.CifarResNet', depth=20))
    plain = plain.to(device).train()
    plain_opt = _weights_wrapper(
        torch.optim.SGD(plain.parameters(), lr=0.025, momentum=0.9,
                        weight_decay=5e-4), amp_dtype, device)

    def plain_step():  # mmengine's train_step shape, as the weight step
        with plain_opt.optim_context(plain):
            loss = F.cross_entropy(plain(train['inputs']),
                                   train['data_samples'])
        plain_opt.update_params(loss)

    first, optim1 = _search_model(1, amp_dtype, device)
    second, optim2 = _search_model(2, amp_dtype, device)
    return dict(
        plain=plain_step,
        supernet=lambda: first.weight_step(train, optim1['weights']),
        first=lambda: first.train_step(data, optim1),
        second=lambda: second.train_step(data, optim2)), args.search_batch


DETECTOR_CONFIGS = dict(plain='faster_rcnn/baselines/r50_plain_fpn_1x_coco.py',
                        sase='faster_rcnn/sase_r50_fpn_1x_coco.py')


def detector_candidates(args, device, amp_dtype):
    """The project's Faster R-CNN R50-FPN configs, plain and SASE, built
    without their pretrained backbones."""
    from mmengine.config import Config
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    from mmengine.registry import init_default_scope
    from search_step import _detector_batch
    configs = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), 'configs')
    init_default_scope('mmdet')
    g = torch.Generator().manual_seed(0)
    data = _detector_batch(g, n=2, size=args.det_size)
    cands = {}
    for name, rel in DETECTOR_CONFIGS.items():
        model_cfg = Config.fromfile(os.path.join(configs, rel)).model
        model_cfg.backbone.init_cfg = None
        torch.manual_seed(0)
        model = _models().build(model_cfg).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        wrapper = (OptimWrapper(optimizer=opt) if amp_dtype is None else
                   AmpOptimWrapper(optimizer=opt, dtype=amp_dtype))
        cands[name] = (lambda m=model, w=wrapper: m.train_step(data, w))
    return cands, 2


BUILDERS = dict(r50=r50_candidates, r20=r20_candidates,
                compile=compile_candidates, detector=detector_candidates)
TITLES = dict(
    r50='ResNet-50 step, batch {batch} x 3 x {size} x {size}',
    r20='CIFAR ResNet-20 search steps, batch {search_batch} x 3 x 32 x 32',
    compile='SASE-ResNet-50 step, eager / torch.compile / channels_last, '
            'batch {batch} x 3 x {size} x {size}',
    detector='Faster R-CNN R50-FPN step, 2 x 3 x {det_size} x {det_size}')


def measure(part, args, device, amp_dtype):
    """One part: build, warm up, time interleaved; returns its figures."""
    from interleave import interleaved
    built = BUILDERS[part](args, device, amp_dtype)
    cands, n_images = built[:2]
    extra = built[2] if len(built) > 2 else {}
    clock = Clock(device)
    times = interleaved({k: clock.timed(f) for k, f in cands.items()},
                        args.repeats, warmup=args.warmup)
    figures = {}
    for k, f in cands.items():
        med = statistics.median(times[k])
        figures[k] = dict(ms=med * 1e3, min_ms=min(times[k]) * 1e3,
                          images_per_s=n_images / med,
                          peak_mib=clock.peak_mib(f))
    ratios = {name: figures[a]['ms'] / figures[b]['ms']
              for name, (a, b) in RATIOS[part].items()
              if a in figures and b in figures}
    return dict(candidates=figures, ratios=ratios, images=n_images,
                repeats=args.repeats, **extra)


def check_targets(part, ratios, amp):
    """{ratio: dict(ratio, target, met)} for this part's targets (AMP)."""
    if not amp:
        return {}
    return {k: dict(ratio=ratios[k], target=t, met=ratios[k] <= t)
            for k, t in TARGETS.get(part, {}).items() if k in ratios}


def print_part(title, fig, targets):
    print(f'\n{title}', flush=True)
    if 'compile_s' in fig:
        print(f'  first compiled step (compiles forward and backward): '
              f'{fig["compile_s"]:.1f} s')
    for k, c in fig['candidates'].items():
        peak = '' if c['peak_mib'] is None else \
            f'  peak {c["peak_mib"]:8.0f} MiB'
        print(f'  {k:>19}: {c["ms"]:8.1f} ms  {c["images_per_s"]:8.1f} '
              f'images/s{peak}')
    for k, r in fig['ratios'].items():
        mark = ''
        if k in targets:
            t = targets[k]
            mark = (f'  (target <= {t["target"]}: '
                    f'{"met" if t["met"] else "MISSED"})')
        print(f'  {k}: {r:.3f}x{mark}', flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--precision', nargs='+', choices=PRECISIONS,
                        default=list(PRECISIONS),
                        help='float32, or AMP float16 / bfloat16 (autocast)')
    parser.add_argument('--parts', nargs='+', choices=PARTS,
                        default=['r50', 'r20'])
    parser.add_argument('--repeats', type=int, default=8)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--search-batch', type=int, default=128)
    parser.add_argument('--det-size', type=int, default=800)
    parser.add_argument('--compile-backend', default='inductor')
    parser.add_argument('--json', metavar='PATH',
                        help='write the figures there after every part')
    parser.add_argument('--smoke', action='store_true',
                        help='CPU, tiny shapes, one repetition: checks the '
                        'code paths, measures nothing')
    args = parser.parse_args(argv)
    for name in ('repeats', 'batch', 'size', 'search_batch', 'det_size'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got '
                         f'{getattr(args, name)}')
    if args.warmup < 0:
        parser.error(f'--warmup must be >= 0, got {args.warmup}')
    if args.smoke:
        args.repeats, args.warmup = 1, 0
        args.batch, args.size, args.search_batch = 2, 64, 8
        args.det_size = 128
    return args


def main(argv=None):
    args = parse_args(argv)
    report = dict(status='running', reason=None, smoke=args.smoke,
                  torch=torch.__version__, device=None, runs={})

    def save():
        if args.json:
            write_json(args.json, report)

    if not args.smoke and not torch.cuda.is_available():
        print(f'gpu_step: {NO_CUDA}; nothing measured (run it on a GPU '
              f'machine, or with --smoke to check the code paths on the '
              f'CPU).')
        report.update(status='skipped', reason=NO_CUDA)
        save()
        return 0
    import sase_mm  # noqa: F401  (registers sase_mm's types)
    device = torch.device('cpu' if args.smoke else 'cuda')
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
        report['device'] = torch.cuda.get_device_name()
        print(f'device: {report["device"]}, torch {torch.__version__}, '
              f'CUDA {torch.version.cuda}', flush=True)
    else:
        torch.set_num_threads(1)  # a shared CPU: no oversubscription
        report['device'] = 'cpu (smoke: code paths only, no measurement)'
        print('gpu_step --smoke: CPU, tiny shapes, one repetition; the '
              'figures measure nothing', flush=True)
    failed = []
    for precision in args.precision:
        amp_dtype = None if precision == 'float32' else getattr(torch,
                                                                precision)
        tag = 'float32' if amp_dtype is None else f'AMP {precision}'
        run = report['runs'].setdefault(precision, dict(
            amp=amp_dtype is not None, parts={}))
        for part in args.parts:
            entry = run['parts'][part] = dict(status='running')
            save()
            if part == 'compile' and args.smoke:
                entry.update(status='skipped', reason='--smoke: inductor '
                             'compiles ResNet-50 for minutes on a CPU')
                print(f'\n{part}: skipped ({entry["reason"]})')
                continue
            t0 = time.perf_counter()
            try:
                fig = measure(part, args, device, amp_dtype)
            except Exception as e:  # recorded; the other parts still run
                entry.update(status='failed',
                             reason=f'{type(e).__name__}: {e}'[:2000],
                             traceback=traceback.format_exc()[-4000:])
                failed.append(f'{precision}/{part}')
                print(f'\n{part} ({tag}): FAILED\n{traceback.format_exc()}',
                      flush=True)
            else:
                targets = check_targets(part, fig['ratios'],
                                        amp_dtype is not None)
                entry.update(status='ok', targets=targets, **fig)
                print_part(f'{TITLES[part].format(**vars(args))}, {tag}',
                           fig, targets)
            entry['seconds'] = time.perf_counter() - t0
            save()
            if device.type == 'cuda':
                torch.cuda.empty_cache()
    report['status'] = 'failed' if failed else 'ok'
    report['reason'] = f'failed: {", ".join(failed)}' if failed else None
    save()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
