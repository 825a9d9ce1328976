"""The prepared GPU check of sase_mm: one command on a bare GPU machine.

SASE (arXiv 2411.08333) is trained on GPUs; this measures it there, on a
machine that has Python, PyTorch with CUDA, scikit-learn and matplotlib but
no OpenMMLab package and no network (docs/gpu.md). Run it through the shell
entry point::

    bash tools/device/gpu_check.sh OUT_DIR [--budget 280] [--only NAMES]

Sections, in this order, so that a run cut off keeps the most important
figures (each under its own time limit, all under ``--budget`` seconds):

1. ``environment``: installs what the machine lacks from the wheels folder
   (``make device-wheels``; offline, without compiling, into a folder put
   on ``PYTHONPATH`` with this checkout) and records the stack;
2. ``cuda_tests``: the CUDA variants of the tests (``pytest tests -k
   "cuda or ..."``), with their result line;
3. ``step_float16``, ``step_bfloat16``, ``step_float32``:
   ``benchmarks/gpu_step.py`` (ResNet-50 plain / SE / SASE; ResNet-20
   plain, supernet, first- and second-order search steps) and its ratios;
4. ``search_first_order``, ``search_second_order``: a real search on the
   digits (``tools/search.py configs/search/sase_r8_digits.py``) on the
   GPU, a few epochs, timed per iteration;
5. ``compile``: ``torch.compile`` (inductor) of the SASE-ResNet-50 training
   step against eager, and channels_last against contiguous.

It writes ``OUT_DIR/gpu_check.log`` (its own lines and every command's
output, as they come) and ``OUT_DIR/gpu_check.json`` (each section's
status: ``ok``, ``failed`` or ``skipped``, with the reason, the command and
the figures; the targets met or missed), rewritten atomically before and
after every section, so a killed run still leaves it.

Without a CUDA device it rehearses: every section still runs its command
in a form that needs no GPU (the tests run and skip their CUDA variants,
the benchmark says it has no device, the search configs are loaded and
every override checked), reports ``skipped`` with the reason, and the JSON
is written all the same. ``--smoke`` also runs the benchmark's code paths
and a tiny search on the CPU.

Only the standard library is used here: everything that imports torch runs
in a child process, so a crash there costs one section.
"""
import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SECTIONS = ('environment', 'cuda_tests', 'step_float16', 'step_bfloat16',
            'step_float32', 'search_first_order', 'search_second_order',
            'compile')
# Seconds: each section's own limit, and the least it is started with.
LIMITS = dict(environment=150, cuda_tests=90, step_float16=60,
              step_bfloat16=45, step_float32=45, search_first_order=50,
              search_second_order=60, compile=90)
MINIMUM = dict(environment=0, cuda_tests=20, step_float16=20,
               step_bfloat16=20, step_float32=20, search_first_order=25,
               search_second_order=25, compile=45)
NO_CUDA = 'no CUDA device (torch.cuda.is_available() is False)'
# The CUDA variants (the ``device`` fixture's 'cuda' ids) and the test whose
# assertions differ with a GPU (tools/train.py --amp builds mmengine's
# AmpOptimWrapper there).
TESTS_K = 'cuda or options_map_to_config'
SEARCH_CONFIG = 'configs/search/sase_r8_digits.py'
# Imported in the environment probe; the check needs the first group.
NEEDED = ('torch', 'numpy', 'sklearn', 'matplotlib', 'cv2', 'pytest',
          'mmengine', 'mmcv', 'mmpretrain', 'mmpretrain.models', 'sase_mm')
OPTIONAL = ('torchvision', 'triton', 'mmcv.ops', 'mmdet', 'mmdet.models')
# What the benchmark, the search and compile need (SASEResNet and the CIFAR
# ResNet import mmpretrain's ResNet): without one they are skipped.
STEP_NEEDS = ('torch', 'mmengine', 'mmcv', 'mmpretrain.models', 'sase_mm')
PROBE = r'''
import importlib, json, platform, sys
out = dict(python=sys.version.split()[0], executable=sys.executable,
           platform=platform.platform(), modules={})
for name in sys.argv[1:]:
    try:
        mod = importlib.import_module(name)
    except BaseException as e:
        out['modules'][name] = dict(ok=False,
                                    error=f'{type(e).__name__}: {e}'[:400])
    else:
        out['modules'][name] = dict(
            ok=True, version=getattr(mod, '__version__', None),
            file=getattr(mod, '__file__', None))
import torch
out['cuda'] = torch.cuda.is_available()
out['torch_cuda'] = torch.version.cuda
if out['cuda']:
    p = torch.cuda.get_device_properties(0)
    out['device'] = dict(name=p.name, capability=f'{p.major}.{p.minor}',
                         memory_gib=round(p.total_memory / 2**30, 1),
                         multiprocessors=p.multi_processor_count,
                         count=torch.cuda.device_count())
    out['cudnn'] = torch.backends.cudnn.version()
print('GPU_CHECK_PROBE ' + json.dumps(out))
'''
# Checks that a config loads and that every --cfg-options key (but those
# meant to be new) names something in it: a typo would add a key silently.
CONFIG_CHECK = r'''
import json, sys
import sase_mm
from mmengine.config import Config
cfg = Config.fromfile(sys.argv[1])
tree = cfg.to_dict()
missing = []
for key in sys.argv[2:]:
    node = tree
    for part in key.split('.'):
        if isinstance(node, list) and part.isdigit() and \
                int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            missing.append(key)
            break
print('GPU_CHECK_CONFIG ' + json.dumps(dict(
    missing=missing, batch_size=cfg.train_dataloader.batch_size,
    order=cfg.model.order, max_epochs=cfg.train_cfg.max_epochs)))
'''


def now_iso():
    return time.strftime('%Y-%m-%dT%H:%M:%S%z')


def write_json(path, obj):
    """``obj`` as JSON at ``path``, atomically (write, then rename)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                               prefix='.gpu_check.', suffix='.tmp')
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from others
        with os.fdopen(fd, 'w') as f:
            json.dump(obj, f, indent=1)
            f.write('\n')
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------- parsing
def parse_pytest(text, finished):
    """Counts, result line and failures from ``pytest -v -rfE`` output.

    Args:
        text (str): what pytest printed.
        finished (bool): whether it ran to the end (else the counts come
            from the per-test lines printed so far).
    """
    counts = {}
    result = None
    for line in text.splitlines():
        m = re.match(r'^=+ (.*\d.* in [\d.]+s.*?) =+$', line.strip())
        if m:
            result = m.group(1)
    if result is not None:
        for n, word in re.findall(r'(\d+) (\w+)', result):
            word = {'error': 'errors', 'warning': 'warnings'}.get(word, word)
            counts[word] = int(n)
    else:
        for m in re.finditer(r'^(tests/\S+) (PASSED|FAILED|SKIPPED|ERROR|'
                             r'XFAIL|XPASS)\b', text, re.M):
            word = {'ERROR': 'errors', 'XFAIL': 'xfailed',
                    'XPASS': 'xpassed'}.get(m.group(2), m.group(2).lower())
            counts[word] = counts.get(word, 0) + 1
        done = sum(counts.values())
        result = (f'cut off after {done} tests: ' + ', '.join(
            f'{v} {k}' for k, v in sorted(counts.items())) if finished is
            False else None)
    failures = re.findall(r'^(?:FAILED|ERROR) (tests/\S+)', text, re.M)
    return dict(result_line=result, counts=counts,
                failures=sorted(set(failures))[:40])


def parse_search_scalars(path, skip=2):
    """Per-iteration times of a search from mmengine's ``scalars.json``
    (one JSON object per line; the training lines carry ``loss`` and
    ``time``, with ``log_processor.window_size=1`` the time of that very
    iteration).

    Args:
        path (str): the ``vis_data/scalars.json`` of the run.
        skip (int): first iterations left out of the steady figures
            (start-up: cuDNN's choice of algorithms, the allocator).
    """
    times, last = [], None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if 'loss' in rec and 'time' in rec:
                times.append(float(rec['time']))
                last = rec
    if not times:
        raise ValueError(f'no training iteration logged in {path}')
    steady = times[skip:] if len(times) > skip else times
    return dict(iterations=len(times), first_iter_s=times[0],
                median_s=statistics.median(steady),
                mean_s=statistics.fmean(steady), min_s=min(steady),
                max_s=max(steady), steady_iterations=len(steady),
                last_loss=last.get('loss'),
                last_loss_search=last.get('loss_search'))


def find_scalars(work_dir):
    """The newest ``<timestamp>/vis_data/scalars.json`` under a work dir."""
    found = []
    for stamp in os.listdir(work_dir):
        path = os.path.join(work_dir, stamp, 'vis_data', 'scalars.json')
        if os.path.isfile(path):
            found.append(path)
    return max(found, key=os.path.getmtime) if found else None


def wheel_name(path):
    """(distribution name, version) from a wheel's file name."""
    parts = os.path.basename(path).split('-')
    return parts[0].replace('_', '-').lower(), parts[1]


def wheel_tops(path):
    """The top-level modules a wheel installs."""
    tops = set()
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            top = name.split('/', 1)[0]
            if top.endswith(('.dist-info', '.data')) or top.endswith('.pth'):
                continue
            if top.endswith('.libs'):  # auditwheel's bundled libraries
                continue
            tops.add(top[:-3] if top.endswith('.py') else top)
    return sorted(t for t in tops if t.isidentifier())


def installed(name, tops):
    """Whether the running Python has the distribution, or every module
    the wheel would install (mmcv-lite's ``mmcv`` from a full mmcv)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
    if tops and all(importlib.util.find_spec(t) is not None for t in tops):
        return 'present (as ' + ', '.join(tops) + ')'
    return None


class Check:
    """One run of the check: its sections, log, JSON and time budget."""

    def __init__(self, args):
        self.args = args
        self.out = os.path.abspath(args.out)
        self.work = os.path.abspath(args.work_dir)
        os.makedirs(self.out, exist_ok=True)
        os.makedirs(self.work, exist_ok=True)
        self.log_path = os.path.join(self.out, 'gpu_check.log')
        self.json_path = os.path.join(self.out, 'gpu_check.json')
        open(self.log_path, 'w').close()  # a fresh log per run
        # Appending: the children write to the same file through their own
        # descriptors, each line lands at the end.
        self.log = open(self.log_path, 'a', buffering=1)
        self.start = time.monotonic()
        self.deadline = self.start + args.budget
        self.python = sys.executable
        # SASE_MM_NO_EXT: sase_mm's compiled kernels are CPU-only, never
        # used by a CUDA tensor; building them would take a minute of the
        # budget (the tests' kernel-path cases skip, saying so).
        self.env = dict(os.environ, PYTHONUNBUFFERED='1', MPLBACKEND='Agg',
                        SASE_MM_NO_EXT='1')
        self.cuda = None
        self.blocked = None  # why the sections that need mmpretrain can't
        self.config_checks = {}
        self.child = None
        self.report = dict(
            check='tools/device/gpu_check.sh', schema=1,
            started=now_iso(), updated=None, finished=False,
            mode=None, budget_s=args.budget, elapsed_s=0.0,
            command=' '.join(shlex.quote(a) for a in sys.argv),
            order=list(SECTIONS), sections={}, targets=[])
        for name in SECTIONS:
            self.report['sections'][name] = dict(status='pending')
        self.save()

    # ---------------------------------------------------------- plumbing
    def say(self, msg):
        line = f'[gpu_check +{time.monotonic() - self.start:6.1f}s] {msg}'
        print(line, flush=True)
        self.log.write(line + '\n')
        self.log.flush()

    def save(self):
        self.report['updated'] = now_iso()
        self.report['elapsed_s'] = round(time.monotonic() - self.start, 1)
        write_json(self.json_path, self.report)

    def left(self):
        return self.deadline - time.monotonic()

    def run(self, cmd, limit, label=None):
        """Runs ``cmd`` in the checkout, its output appended to the log;
        returns (exit code or None when cut off at ``limit`` s, its output,
        seconds). ``label`` stands for a ``python -c`` script in the log."""
        shown = list(cmd)
        if label and '-c' in shown:
            shown[shown.index('-c') + 1] = label
        self.say('$ ' + ' '.join(shlex.quote(c) for c in shown) +
                 f'   (limit {limit:.0f} s)')
        self.log.flush()
        offset = os.path.getsize(self.log_path)
        t0 = time.monotonic()
        self.child = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=self.log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        try:
            rc = self.child.wait(timeout=max(limit, 1))
        except subprocess.TimeoutExpired:
            self.kill_child()
            rc = None
        self.child = None
        seconds = time.monotonic() - t0
        with open(self.log_path, errors='replace') as f:
            f.seek(offset)
            text = f.read()
        return rc, text, seconds

    def kill_child(self):
        child = self.child
        if child is None or child.poll() is not None:
            return
        try:  # the child's whole process group (pytest, dataloaders)
            os.killpg(child.pid, signal.SIGTERM)
            child.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()

    def close(self):
        self.log.close()

    def tail(self, text, n=15):
        return '\n'.join(text.rstrip().splitlines()[-n:])

    def section(self, name, fn):
        """Runs section ``name`` (``fn(entry, limit)`` fills ``entry``)
        unless the budget is spent; the JSON is saved before and after."""
        entry = self.report['sections'][name]
        if self.args.only and name not in self.args.only \
                and name != 'environment':
            entry.update(status='skipped', reason='not in --only')
            self.save()
            return
        if self.blocked and name not in ('environment', 'cuda_tests'):
            entry.update(status='skipped', reason=self.blocked)
            self.say(f'{name}: skipped ({entry["reason"]})')
            self.save()
            return
        limit = min(LIMITS[name], self.left() - 3)
        if name != 'environment' and limit < MINIMUM[name]:
            entry.update(status='skipped', reason=(
                f'time budget: {max(self.left(), 0):.0f} s left of '
                f'--budget {self.args.budget:.0f} s; this section needs at '
                f'least {MINIMUM[name]} s'))
            self.say(f'{name}: skipped ({entry["reason"]})')
            self.save()
            return
        entry.update(status='running', started=now_iso(),
                     limit_s=round(limit, 1))
        self.say(f'--- {name} (limit {limit:.0f} s)')
        self.save()
        t0 = time.monotonic()
        try:
            fn(entry, limit)
        except Exception as e:  # the check itself broke: say so, go on
            entry.update(status='failed',
                         reason=f'the check broke: {type(e).__name__}: {e}')
        if entry['status'] == 'running':
            entry.update(status='failed', reason='the section ended '
                         'without a status (a bug of the check)')
        entry['seconds'] = round(time.monotonic() - t0, 1)
        line = f'{name}: {entry["status"]}'
        if entry.get('reason'):
            line += f' ({entry["reason"]})'
        if entry.get('summary'):
            line += f' -- {entry["summary"]}'
        self.say(line)
        self.save()

    # ---------------------------------------------------------- sections
    def environment(self, entry, limit):
        wheels = os.path.abspath(self.args.wheels)
        site = os.path.join(self.work, 'site')
        shutil.rmtree(site, ignore_errors=True)
        inst = entry['install'] = dict(wheels_dir=wheels, site=None,
                                       installed=[], present=[])
        files = sorted(os.path.join(wheels, f) for f in os.listdir(wheels)
                       if f.endswith('.whl')) if os.path.isdir(wheels) \
            else []
        if not files:
            inst['note'] = (f'no wheels folder at {wheels} (make '
                            f'device-wheels fills it): using the installed '
                            f'stack as it is')
            self.say(inst['note'])
        else:
            inst['size_mib'] = round(sum(os.path.getsize(f) for f in files)
                                     / 2**20, 2)
            todo = []
            for path in files:
                name, version = wheel_name(path)
                have = installed(name, wheel_tops(path))
                if have:
                    inst['present'].append(f'{name} {have}')
                else:
                    todo.append(path)
                    inst['installed'].append(f'{name} {version}')
            if todo:
                os.makedirs(site, exist_ok=True)
                self.install(todo, site, inst, limit)
                inst['site'] = site
                self.env['PYTHONPATH'] = os.pathsep.join(
                    [ROOT, site] + [p for p in [os.environ.get(
                        'PYTHONPATH')] if p])
            self.say(f'wheels: {len(inst["installed"])} installed into '
                     f'{site}, {len(inst["present"])} already present')
        if 'PYTHONPATH' not in self.env or ROOT not in \
                self.env['PYTHONPATH'].split(os.pathsep):
            self.env['PYTHONPATH'] = os.pathsep.join(
                [ROOT] + [p for p in [self.env.get('PYTHONPATH')] if p])
        entry['child_env'] = {k: self.env[k] for k in (
            'PYTHONPATH', 'SASE_MM_NO_EXT', 'MPLBACKEND')}
        if inst.get('error'):
            entry.update(status='failed', reason=inst['error'])
            return
        rc, text, _ = self.run([self.python, '-c', PROBE, *NEEDED,
                                *OPTIONAL], max(self.left() - 3, 30),
                               label='<environment probe>')
        m = re.search(r'^GPU_CHECK_PROBE (.*)$', text, re.M)
        if rc != 0 or not m:
            entry.update(status='failed', reason='the environment probe '
                         f'failed (exit {rc}): ' + self.tail(text, 5))
            return
        probe = json.loads(m.group(1))
        entry.update(probe)
        self.cuda = bool(probe['cuda'])
        self.report['mode'] = 'device' if self.cuda else 'rehearsal'
        broken = [f'{k} ({v["error"]})' for k, v in probe['modules'].items()
                  if k in NEEDED and not v['ok']]
        missing = [k for k, v in probe['modules'].items()
                   if k in OPTIONAL and not v['ok']]
        entry['optional_missing'] = missing
        dev = probe.get('device') or {}
        entry['summary'] = (
            f'python {probe["python"]}, torch '
            f'{probe["modules"]["torch"].get("version")}, CUDA '
            f'{probe["torch_cuda"]}, ' +
            (f'{dev.get("name")} ({dev.get("memory_gib")} GiB)'
             if self.cuda else NO_CUDA) +
            (f'; not importable: {", ".join(missing)}' if missing else ''))
        if broken:
            entry.update(status='failed', reason='cannot import: ' +
                         '; '.join(broken))
            blocking = [f'{k} ({v["error"]})'
                        for k, v in probe['modules'].items()
                        if k in STEP_NEEDS and not v['ok']]
            if blocking:
                self.blocked = ('needs what does not import here: ' +
                                '; '.join(blocking))
        else:
            entry['status'] = 'ok'

    def install(self, todo, site, inst, limit):
        """pip, offline, no dependencies resolved (the folder holds them),
        nothing compiled; unzipped by hand where pip is missing."""
        has_pip = subprocess.run(
            [self.python, '-m', 'pip', '--version'], capture_output=True,
        ).returncode == 0
        if has_pip:
            rc, text, _ = self.run(
                [self.python, '-m', 'pip', 'install', '--no-index',
                 '--no-deps', '--no-compile', '--no-cache-dir',
                 '--disable-pip-version-check', '--quiet', '--target', site,
                 *todo], limit)
            if rc != 0:
                inst['error'] = (f'pip install of the wheels failed (exit '
                                 f'{rc}): ' + self.tail(text, 5))
            self.drop_test_suites(site)
            return
        inst['method'] = 'unzipped (no pip)'
        for path in todo:
            with zipfile.ZipFile(path) as z:
                z.extractall(site)
        for top in os.listdir(site):  # a wheel's .data/{purelib,platlib}
            if top.endswith('.data'):
                for kind in ('purelib', 'platlib'):
                    src = os.path.join(site, top, kind)
                    if os.path.isdir(src):
                        for item in os.listdir(src):
                            shutil.move(os.path.join(src, item), site)
        self.drop_test_suites(site)

    @staticmethod
    def drop_test_suites(site):
        """Removes a top-level ``tests`` package a wheel installed
        (model-index ships its test suite so): on ``PYTHONPATH`` it would
        be what ``import tests`` finds."""
        shutil.rmtree(os.path.join(site, 'tests'), ignore_errors=True)

    def rehearsal_skip(self, entry):
        entry.update(status='skipped', reason=NO_CUDA)

    def cuda_tests(self, entry, limit):
        cmd = [self.python, '-m', 'pytest', *self.args.tests, '-k', TESTS_K,
               '-v',
               '-p', 'no:cacheprovider', '--continue-on-collection-errors',
               '-rfE', '--tb=short', '-o', 'console_output_style=classic']
        entry['command'] = cmd[1:]
        rc, text, _ = self.run(cmd, limit)
        figures = parse_pytest(text, rc is not None)
        entry['figures'] = figures
        entry['summary'] = figures['result_line']
        if not self.cuda:
            self.rehearsal_skip(entry)
            entry['rehearsal'] = ('ran on the CPU: the CUDA variants skip '
                                  '("needs a CUDA device")')
            if rc not in (0, 1) or not figures['counts']:
                entry.update(status='failed', reason=(
                    f'pytest did not run (exit {rc}): ' +
                    self.tail(text, 5)))
            return
        c = figures['counts']
        if rc is None:
            entry.update(status='failed', reason=f'cut off at the time '
                         f'limit ({limit:.0f} s)')
        elif c.get('failed') or c.get('errors') or not c.get('passed'):
            entry.update(status='failed', reason=(
                f'{c.get("failed", 0)} failed, {c.get("errors", 0)} errors, '
                f'{c.get("passed", 0)} passed (exit {rc})'))
        else:
            entry['status'] = 'ok'

    def step(self, precision):
        parts = ['r50', 'r20']

        def fn(entry, limit):
            self.gpu_step(entry, limit, ['--precision', precision,
                                         '--parts', *parts],
                          f'step_{precision}')
        return fn

    def compile(self, entry, limit):
        self.gpu_step(entry, limit, ['--precision', 'float16', '--parts',
                                     'compile'], 'compile', smoke=False)

    def gpu_step(self, entry, limit, extra, tag, smoke=True):
        path = os.path.join(self.work, f'{tag}.json')
        if os.path.exists(path):
            os.unlink(path)
        cmd = [self.python, 'benchmarks/gpu_step.py', *extra, '--json',
               path, '--repeats', str(self.args.repeats)]
        if not self.cuda and self.args.smoke and smoke:
            cmd.append('--smoke')
        entry['command'] = cmd[1:]
        rc, text, _ = self.run(cmd, limit)
        try:
            with open(path) as f:
                result = json.load(f)
        except (OSError, ValueError):
            result = None
        if result is None:
            entry.update(status='failed', reason=(
                'cut off before it wrote any figure' if rc is None else
                f'wrote no figures (exit {rc}): ' + self.tail(text, 5)))
            return
        entry['figures'] = result
        runs = result.get('runs', {})
        parts = {f'{p}/{k}': v for p, r in runs.items()
                 for k, v in r.get('parts', {}).items()}
        entry['summary'] = '; '.join(
            f'{k}: ' + ', '.join(f'{n} {r:.2f}x'
                                 for n, r in v.get('ratios', {}).items())
            for k, v in parts.items() if v.get('status') == 'ok') or None
        bad = [f'{k}: {v.get("reason") or v["status"]}'
               for k, v in parts.items() if v.get('status') != 'ok' and
               not (v.get('status') == 'skipped' and result.get('smoke'))]
        if not self.cuda:
            self.rehearsal_skip(entry)
            entry['summary'] = None
            if result.get('smoke'):
                entry['rehearsal'] = ('--smoke: the code paths ran on the '
                                      'CPU at tiny shapes (no measurement)')
            else:
                entry['rehearsal'] = ('ran benchmarks/gpu_step.py, which '
                                      'said: ' + str(result.get('reason')))
            if rc != 0 or bad or result.get('status') not in ('ok',
                                                              'skipped'):
                entry.update(status='failed', reason=(
                    f'benchmarks/gpu_step.py failed on the CPU (exit {rc}): '
                    + ('; '.join(bad) or self.tail(text, 5))))
            return
        if result.get('status') == 'skipped' or not parts:
            entry.update(status='failed', reason=(
                'benchmarks/gpu_step.py measured nothing: ' +
                str(result.get('reason'))))
            return
        for p, r in runs.items():
            for k, v in r.get('parts', {}).items():
                for t, fig in (v.get('targets') or {}).items():
                    self.report['targets'].append(dict(
                        name=t, precision=p, part=k, **fig))
        if rc is None:
            entry.update(status='failed', reason=(
                f'cut off at the time limit ({limit:.0f} s); the parts it '
                f'finished are in the figures'))
        elif bad or rc != 0:
            entry.update(status='failed', reason='; '.join(bad) or
                         f'exit {rc}: ' + self.tail(text, 5))
        else:
            entry['status'] = 'ok'

    def search(self, order):
        def fn(entry, limit):
            self.digits_search(entry, limit, order)
        return fn

    def search_options(self, order):
        """(key, value, must already exist) of the search's overrides."""
        e = self.args.search_epochs
        opts = [('model.order', order, True),
                ('train_cfg.max_epochs', e, True),
                ('train_cfg.val_interval', e, True),
                ('param_scheduler.weights.0.T_max', e, True),
                ('param_scheduler.weights.0.end', e, True),
                ('default_hooks.logger.interval', 1, True),
                ('default_hooks.checkpoint.interval', e, True),
                # per-iteration times, not a mean over 10
                ('log_processor.window_size', 1, False)]
        if not self.cuda and self.args.smoke:  # a tiny CPU search
            opts += [('model.supernet.depth', 8, True),
                     ('model.supernet.base_channels', 8, False),
                     ('model.supernet.input_size', 8, True)]
            for loader in ('train_dataloader', 'val_dataloader',
                           'train_cfg.search_dataloader'):
                opts += [(f'{loader}.batch_size', 8, True),
                         (f'{loader}.num_batch_per_epoch', 3, False),
                         (f'{loader}.dataset.size', 8, True)]
        return opts

    def digits_search(self, entry, limit, order):
        t0 = time.monotonic()
        opts = self.search_options(order)
        work = os.path.join(self.work, f'search_order{order}')
        shutil.rmtree(work, ignore_errors=True)
        cmd = [self.python, 'tools/search.py', SEARCH_CONFIG, '--work-dir',
               work, '--cfg-options'] + [f'{k}={v}' for k, v, _ in opts]
        entry['command'] = cmd[1:]
        keys = tuple(k for k, _, must in opts if must)
        if keys not in self.config_checks:  # the same keys for both orders
            rc, text, _ = self.run(
                [self.python, '-c', CONFIG_CHECK, SEARCH_CONFIG, *keys],
                min(limit, 60), label='<config check>')
            m = re.search(r'^GPU_CHECK_CONFIG (.*)$', text, re.M)
            if rc != 0 or not m:
                entry.update(status='failed', reason=(
                    f'the config check failed (exit {rc}): ' +
                    self.tail(text, 5)))
                return
            self.config_checks[keys] = json.loads(m.group(1))
        cfg = self.config_checks[keys]
        if cfg['missing']:
            entry.update(status='failed', reason=(
                f'{SEARCH_CONFIG} has no {", ".join(cfg["missing"])}: the '
                f'overrides would add new keys instead'))
            return
        entry['config_check'] = 'ok: the config loads and has every key ' \
                                'the overrides set'
        if not self.cuda and not self.args.smoke:
            self.rehearsal_skip(entry)
            entry['rehearsal'] = 'checked the config and overrides only'
            return
        limit = max(limit - (time.monotonic() - t0) - 2, 10)  # what's left
        rc, text, seconds = self.run(cmd, limit)
        batch = {k: v for k, v, _ in opts}.get('train_dataloader.batch_size',
                                               cfg['batch_size'])
        figures = dict(epochs=self.args.search_epochs, order=order,
                       batch_size=batch, wall_s=seconds)
        entry['figures'] = figures
        scalars = find_scalars(work) if os.path.isdir(work) else None
        if scalars:
            try:
                figures.update(parse_search_scalars(scalars))
                figures['images_per_s'] = (figures['batch_size'] /
                                           figures['median_s'])
            except ValueError as e:
                figures['parse_error'] = str(e)
        acc = re.search(r'Held-out accuracy/top1: ([\d.]+)%', text)
        if acc:
            figures['held_out_top1'] = float(acc.group(1))
        geno = re.search(r'^Searched genotype: (.*)$', text, re.M)
        if geno:
            figures['genotype'] = geno.group(1)
        if 'median_s' in figures:
            entry['summary'] = (
                f'{figures["iterations"]} iterations, median '
                f'{figures["median_s"] * 1e3:.0f} ms/iteration '
                f'({figures["images_per_s"]:.0f} images/s), first '
                f'{figures["first_iter_s"]:.2f} s')
        if not self.cuda:
            self.rehearsal_skip(entry)
            entry['rehearsal'] = 'a tiny search ran on the CPU (--smoke)'
            if rc != 0 or 'median_s' not in figures:
                entry.update(status='failed', reason=(
                    f'the tiny CPU search failed (exit {rc}): ' +
                    self.tail(text, 5)))
            return
        if rc is None:
            entry.update(status='failed', reason=f'cut off at the time '
                         f'limit ({limit:.0f} s)')
        elif rc != 0 or 'median_s' not in figures:
            entry.update(status='failed', reason=(
                f'tools/search.py exit {rc}: ' + self.tail(text, 5)))
        else:
            entry['status'] = 'ok'

    # ---------------------------------------------------------------- all
    def main(self):
        self.say(f'sase_mm GPU check in {ROOT}; output in {self.out}; '
                 f'budget {self.args.budget:.0f} s')
        self.section('environment', self.environment)
        if self.cuda is None:  # no torch at all: nothing else can run
            for name in SECTIONS[1:]:
                self.report['sections'][name].update(
                    status='skipped', reason='the environment probe failed')
        else:
            if not self.cuda:
                self.say(f'rehearsal: {NO_CUDA}; every section runs what '
                         f'needs no GPU and reports skipped')
            self.section('cuda_tests', self.cuda_tests)
            for p in ('float16', 'bfloat16', 'float32'):
                self.section(f'step_{p}', self.step(p))
            self.section('search_first_order', self.search(1))
            self.section('search_second_order', self.search(2))
            self.section('compile', self.compile)
        self.report['finished'] = True
        self.save()
        self.say('summary:')
        for name in SECTIONS:
            e = self.report['sections'][name]
            extra = e.get('reason') or e.get('summary') or ''
            self.say(f'  {name:<20} {e["status"]:<8} {extra}'[:300])
        for t in self.report['targets']:
            self.say(f'  target {t["precision"]} {t["name"]}: '
                     f'{t["ratio"]:.3f}x <= {t["target"]}: '
                     f'{"met" if t["met"] else "MISSED"}')
        self.say(f'wrote {self.json_path} and {self.log_path}')
        failed = [n for n in SECTIONS
                  if self.report['sections'][n]['status'] == 'failed']
        return 1 if failed else 0

    def interrupted(self, signum, frame):
        self.kill_child()
        for entry in self.report['sections'].values():
            if entry['status'] == 'running':
                entry.update(status='failed', reason=f'interrupted (signal '
                             f'{signum}) while running')
        self.say(f'interrupted by signal {signum}')
        self.save()
        sys.exit(128 + signum)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True,
                        help='folder for gpu_check.json and gpu_check.log')
    parser.add_argument('--budget', type=float, default=280,
                        help='seconds for the whole check (default 280)')
    parser.add_argument('--wheels', default=os.path.join(ROOT,
                                                         'device_wheels'),
                        help='folder of wheels (make device-wheels)')
    parser.add_argument('--work-dir', default=os.path.join(
        ROOT, 'work_dirs', 'gpu_check'), help='scratch: the installed '
        'wheels, the searches\' work dirs, the benchmark\'s JSONs')
    parser.add_argument('--only', nargs='+', choices=SECTIONS[1:],
                        help='run only these sections (environment always '
                        'runs)')
    parser.add_argument('--tests', nargs='+', default=['tests'],
                        metavar='PATH', help='where cuda_tests looks for '
                        'the CUDA variants (default: tests)')
    parser.add_argument('--repeats', type=int, default=8,
                        help='timed repetitions of each benchmark step')
    parser.add_argument('--search-epochs', type=int, default=2)
    parser.add_argument('--smoke', action='store_true',
                        help='without CUDA, also run the benchmark\'s code '
                        'paths and a tiny search on the CPU')
    args = parser.parse_args(argv)
    if args.budget <= 0 or args.repeats < 1 or args.search_epochs < 1:
        parser.error(f'--budget must be > 0, --repeats and --search-epochs '
                     f'>= 1; got {args.budget}, {args.repeats}, '
                     f'{args.search_epochs}')
    return args


def main(argv=None):
    check = Check(parse_args(argv))
    signal.signal(signal.SIGTERM, check.interrupted)
    try:
        return check.main()
    finally:
        check.close()


if __name__ == '__main__':
    sys.exit(main())
