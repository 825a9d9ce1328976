"""SIGKILL a search at random moments, then resume it: does it always resume?

SASE (arXiv 2411.08333) searches for hours; a kill (OOM killer, pre-empted
node, Ctrl-\\) must never cost more than the epoch in progress. Each try
starts the digits search (``configs/search/sase_r8_digits.py``, shrunk to
a few iterations per epoch with ``--cfg-options``, one checkpoint kept),
kills it with SIGKILL, then runs ``tools/search.py --resume`` to the end and
checks that it exits 0 and that its last checkpoint reads and verifies.

Half of the kills land at a uniformly random moment of the run; the other
half are aimed at checkpoint writes (the script watches the work dir for
the temporary file a write creates, or, with mmengine's own hook, for the
checkpoint file changing size, and kills a random 0-2 ms later). A kill
counts as "during a write" when a temporary file, or a checkpoint whose size
was still changing, was there at that moment.

Usage::

    python benchmarks/sigkill_resume.py [--tries 20] [--seed 0]
    python benchmarks/sigkill_resume.py --hook mmengine.CheckpointHook
        # the same with mmengine's hook, for comparison
"""
import argparse
import glob
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'configs', 'search', 'sase_r8_digits.py')
EPOCHS = 4


def _options(hook: str):
    return ['--cfg-options', f'train_cfg.max_epochs={EPOCHS}',
            f'train_cfg.val_interval={EPOCHS}',
            'train_dataloader.num_batch_per_epoch=2',
            'train_cfg.search_dataloader.num_batch_per_epoch=2',
            'val_dataloader.num_batch_per_epoch=1',
            f'default_hooks.checkpoint.type={hook}',
            'default_hooks.checkpoint.max_keep_ckpts=1',
            'custom_hooks.0.plot=False', 'randomness.seed=0']


def _search(work: str, hook: str, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, os.path.join(REPO, 'tools', 'search.py'), CONFIG,
           '--work-dir', work] + (['--resume'] if resume else []) + \
        _options(hook)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _writing(work: str, sizes: dict) -> bool:
    """A write in progress: a temporary checkpoint file, or a checkpoint
    whose size changed since the last look."""
    if glob.glob(os.path.join(work, '.*.tmp')):
        return True
    busy = False
    for path in glob.glob(os.path.join(work, '*.pth')):
        try:
            size = os.path.getsize(path)
        except OSError:
            continue
        if sizes.get(path) not in (None, size):
            busy = True
        sizes[path] = size
    return busy


def one_try(rng: random.Random, hook: str, aim: bool, run_s: float) -> dict:
    with tempfile.TemporaryDirectory() as work:
        proc = _search(work, hook, resume=False)
        deadline = time.time() + rng.uniform(0.3, 1.0) * run_s
        sizes, during = {}, False
        while proc.poll() is None:
            if aim and _writing(work, sizes):
                time.sleep(rng.uniform(0, 0.002))
                during = _writing(work, sizes)
                break
            if not aim and time.time() >= deadline:
                during = _writing(work, sizes)
                break
            time.sleep(0.001)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        # A temporary file left behind: the kill landed inside a write.
        partial = bool(glob.glob(os.path.join(work, '.*.tmp')))
        during = during or partial
        resumed = _search(work, hook, resume=True)
        _, err = resumed.communicate()
        ok = resumed.returncode == 0
        if ok:
            from sase_mm.apis.resume import check_readable
            last = os.path.join(work, f'epoch_{EPOCHS}.pth')
            ok = check_readable(last) == ''
        return dict(killed=killed, during=during, ok=ok,
                    error='' if ok else err.strip().splitlines()[-1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tries', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--hook', default='sase_mm.SafeCheckpointHook',
                        help="the checkpoint hook's type (default: sase_mm's;"
                        " 'mmengine.CheckpointHook' for mmengine's own)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    start = time.time()
    with tempfile.TemporaryDirectory() as work:  # how long a whole run takes
        proc = _search(work, args.hook, resume=False)
        proc.communicate()
    run_s = time.time() - start
    print(f'hook {args.hook}; one uninterrupted run: {run_s:.1f} s '
          f'({EPOCHS} epochs of 2 iterations, a checkpoint each)')

    results = []
    for i in range(args.tries):
        r = one_try(rng, args.hook, aim=bool(i % 2), run_s=run_s)
        results.append(r)
        print(f'  try {i + 1:2d}: {"aimed at a write" if i % 2 else "random"}'
              f', killed={r["killed"]}, during a write={r["during"]}, '
              f'resume {"ok" if r["ok"] else "FAILED " + str(r["error"])}',
              flush=True)
    killed = sum(r['killed'] for r in results)
    during = sum(r['during'] for r in results)
    ok = sum(r['ok'] for r in results)
    print(f'tries {len(results)}, killed {killed}, killed during a write '
          f'{during}, resumes that succeeded {ok} of {len(results)}')
    return 0 if ok == len(results) else 1


if __name__ == '__main__':
    sys.exit(main())
