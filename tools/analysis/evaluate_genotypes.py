"""A study of a genotype against the alternatives, over several seeds.

SASE (arXiv 2411.08333) searches a block on a fixed network and compares
it with other attention modules and with random blocks ("SASE (random)"),
one training each. On your data, is the searched block better than SE,
than no attention, than a random block, by more than the spread between
seeds? This tool trains the fixed network of a search config (its
``model.supernet``, e.g. the CIFAR ResNet of ``configs/search/
sase_r8_digits.py``) with each candidate attention in its attention slot,
for seeds 0..S-1, under one schedule: the search's train and search halves
together, its weight optimizer and schedulers (rescaled to ``--epochs``),
one mmengine Runner per (candidate, seed), top-1 on its held-out split
(``sase_mm/apis/fixed_network.py``).

Candidates (``--candidates``, default ``paper se none random:3``):

* a genotype file (a search's ``genotype.json`` / ``genotype.py``; parsed,
  never executed);
* ``paper``: the paper's genotype;
* a module of the attention zoo by its lower-case name (``se``, ``eca``,
  ``cbam``, ...);
* ``none``: no attention;
* ``random:K``: K random genotypes (``random_0`` ...; the sampler of
  ``tools/sample_genotypes.py`` with seed 0).

Written into ``--work-dir``, atomically, after every run: ``results.json``
(one record per (candidate, seed) and each candidate's statistics),
``results.md`` (the table: mean +- std over seeds and the differences to
``none`` and to the mean of the random blocks, paired by seed, with 95%
t-intervals; ``sase_mm/apis/study_stats.py``) and ``results.png``. Each run
trains in ``<work-dir>/runs/<candidate>/seed_<s>``. A killed study resumes:
the same command again keeps the runs ``results.json`` holds and does the
others (a run that was interrupted is redone).

Usage::

    python tools/analysis/evaluate_genotypes.py \\
        configs/search/sase_r8_digits.py --work-dir work_dirs/study \\
        --candidates work_dirs/demo/genotype.json paper se none random:3
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import os.path as osp
import platform
import re
import shlex
import sys
import time
import uuid
from typing import Dict, List, Optional, Sequence

import sase_mm  # noqa: F401  sase_mm's types and configs, before parsing
from sase_mm.apis import tool_args
from sase_mm.utils.json_file import JSONFileError, read_json

RESULTS_JSON, RESULTS_MD, RESULTS_PNG = ('results.json', 'results.md',
                                         'results.png')
FORMAT = 'sase_mm.evaluate_genotypes/1'
DEFAULT_CANDIDATES = ('paper', 'se', 'none', 'random:3')
# The sampler seed of ``random:K`` (its first K genotypes, recorded).
RANDOM_SEED = 0
KINDS = ('file', 'paper', 'zoo', 'none', 'random')
MAX_RESULTS_BYTES = 16 << 20
PREFIX = '[evaluate_genotypes]'


class StudyError(ValueError):
    """Bad input of a study (a candidate, the seeds, a results file); the
    message names it and what is valid."""


# ------------------------------------------------------------ candidates
def zoo_names() -> Dict[str, str]:
    """Lower-case name -> registered name of the attention zoo
    (``se`` -> ``SE``)."""
    from sase_mm.models.attention_zoo import ZOO
    return {name.lower(): name for name in ZOO}


def valid_forms() -> str:
    """What ``--candidates`` accepts, for the messages."""
    return (f'a genotype file (.json / .py, e.g. a search\'s '
            f'genotype.json), paper, none, random:K (K >= 1), or an '
            f'attention of the zoo: {", ".join(zoo_names())}')


def sase_options(search_attn: Optional[dict]) -> dict:
    """The options of the search's block (``SASESearch(fc_sigmoid=...)``)
    that the fixed block ``SASE`` takes too: a genotype is trained as it
    was searched."""
    import inspect

    from sase_mm.models.sase import SASE
    if not isinstance(search_attn, dict):
        return {}
    params = inspect.signature(SASE).parameters
    return {k: v for k, v in search_attn.items()
            if k not in ('type', 'genotype', 'in_channels') and k in params}


def _genotype_candidate(name: str, kind: str, genotype, options: dict,
                        **extra) -> dict:
    attn = dict(type='sase_mm.SASE', genotype=list(genotype), **options)
    return dict(name=name, kind=kind, attention=attn,
                genotype=list(genotype), **extra)


def resolve_candidates(specs: Sequence[str],
                       search_attn: Optional[dict] = None) -> List[dict]:
    """The candidates ``specs`` name, each ``dict(name, kind, attention,
    genotype)`` (``attention``: the ``attn_cfg``, None for ``none``;
    ``genotype``: its six operations, None for a zoo module or none).

    Args:
        specs: ``--candidates``.
        search_attn: the search config's ``attn_cfg``: its options that
            the fixed SASE block takes go with every genotype.

    Raises:
        StudyError: an unknown or repeated candidate, a bad ``random:K``,
            a genotype file that does not exist.
        GenotypeFileError: a genotype file that does not read (naming it).
    """
    from sase_mm.models.sase import SASE_PAPER_GENOTYPE, Genotype
    from sase_mm.models.sase.random_genotypes import (num_genotypes,
                                                      sample_genotypes)
    options = sase_options(search_attn)
    zoo = zoo_names()
    out = []
    for spec in specs:
        low = spec.strip().lower()
        if spec.endswith(('.json', '.py')) or os.sep in spec or \
                osp.isfile(spec):
            path = osp.normpath(spec)
            if not osp.isfile(path):
                raise StudyError(f'candidate {spec!r}: genotype file '
                                 f'{path!r} does not exist')
            out.append(_genotype_candidate(path, 'file', Genotype.load(path),
                                           options, file=path))
        elif low == 'paper':
            out.append(_genotype_candidate('paper', 'paper',
                                           SASE_PAPER_GENOTYPE, options))
        elif low == 'none':
            out.append(dict(name='none', kind='none', attention=None,
                            genotype=None))
        elif low in zoo:
            out.append(dict(name=low, kind='zoo', genotype=None,
                            attention=dict(type=f'sase_mm.{zoo[low]}')))
        elif low.startswith('random:'):
            k = low.split(':', 1)[1]
            space = num_genotypes()
            if not k.isdigit() or not 1 <= int(k) <= space:
                raise StudyError(f'candidate {spec!r}: random:K takes a '
                                 f'number of random genotypes K in [1, '
                                 f'{space}], e.g. random:3')
            for i, g in enumerate(sample_genotypes(int(k), RANDOM_SEED)):
                out.append(_genotype_candidate(
                    f'random_{i}', 'random', g, options,
                    random=dict(seed=RANDOM_SEED, index=i)))
        else:
            raise StudyError(f'unknown candidate {spec!r}; valid: '
                             f'{valid_forms()}')
    for c in out:  # as results.json holds it (lists, plain dicts)
        c['attention'] = json.loads(json.dumps(c['attention']))
    names = [c['name'] for c in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise StudyError(f'candidates given twice: {", ".join(twice)} '
                         f'(each candidate once; random:K gives random_0 '
                         f'.. random_K-1)')
    return out


def run_dir_name(name: str) -> str:
    """A folder name for a candidate (a file's path made safe, with a
    short hash of it so two files never share one)."""
    safe = re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_.') or 'file'
    if safe == name:
        return name
    return f'{safe}-{hashlib.sha1(name.encode()).hexdigest()[:8]}'


# ------------------------------------------------------------ results.json
def _bad(path: str, why: str):
    raise StudyError(
        f'{path} cannot be resumed from: {why}. It is not overwritten: '
        f'fix it, move it away to start the study over, or use another '
        f'--work-dir')


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and \
        math.isfinite(v)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_run(path: str, i: int, run) -> dict:
    """One record of ``results.json``, checked for its form."""
    from sase_mm.models.sase import Genotype
    where = f'run {i}'
    keys = ('candidate', 'kind', 'attention', 'genotype', 'seed', 'top1',
            'params', 'train_seconds')
    if not isinstance(run, dict) or any(k not in run for k in keys):
        _bad(path, f'{where} is not an object with the keys {list(keys)}')
    if not isinstance(run['candidate'], str) or not run['candidate'] or \
            len(run['candidate']) > 4096:
        _bad(path, f'{where}: "candidate" must be a non-empty name')
    if run['kind'] not in KINDS:
        _bad(path, f'{where}: "kind" must be one of {list(KINDS)}')
    if run['attention'] is not None and not (
            isinstance(run['attention'], dict) and
            isinstance(run['attention'].get('type'), str)):
        _bad(path, f'{where}: "attention" must be null or an attn_cfg '
                   f'object with a "type"')
    if run['genotype'] is not None:
        try:
            Genotype(run['genotype'])
        except (TypeError, ValueError) as err:
            _bad(path, f'{where}: "genotype": {err}')
    if not _int(run['seed']) or run['seed'] < 0:
        _bad(path, f'{where}: "seed" must be an int >= 0')
    if not _number(run['top1']) or not 0 <= run['top1'] <= 100:
        _bad(path, f'{where}: "top1" must be a number in [0, 100]')
    if not _int(run['params']) or run['params'] < 0:
        _bad(path, f'{where}: "params" must be an int >= 0')
    if not _number(run['train_seconds']) or run['train_seconds'] < 0:
        _bad(path, f'{where}: "train_seconds" must be a number >= 0')
    return run


def read_results(path: str, setup: dict) -> List[dict]:
    """The finished runs of ``results.json`` (none when it is absent),
    checked: its form, each record, no run twice, and a study of the same
    recipe (``setup``).

    Raises:
        StudyError: naming the file and what is wrong.
    """
    if not osp.exists(path):
        return []
    try:
        data = read_json(path, MAX_RESULTS_BYTES)
    except JSONFileError as err:
        _bad(path, str(err))
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        _bad(path, f'it is not a results file of this tool (expected an '
                   f'object with "format": "{FORMAT}")')
    old = data.get('setup')
    if not isinstance(old, dict) or not isinstance(data.get('runs'), list):
        _bad(path, 'it lacks "setup" (an object) or "runs" (a list)')
    if old.get('recipe_sha256') != setup['recipe_sha256'] or \
            old.get('random_seed') != setup['random_seed']:
        _bad(path, f'it holds a study of another recipe ({old.get("epochs")}'
                   f' epochs of {old.get("config")!r}; now '
                   f'{setup["epochs"]} epochs of {setup["config"]!r}; or '
                   f'the config, its --cfg-options or the random genotypes '
                   f'differ), whose runs do not compare with this one\'s')
    runs = [check_run(path, i, r) for i, r in enumerate(data['runs'])]
    seen = set()
    for r in runs:
        key = (r['candidate'], r['seed'])
        if key in seen:
            _bad(path, f'it holds run ({r["candidate"]}, seed {r["seed"]}) '
                       f'twice')
        seen.add(key)
    return runs


def check_kept(path: str, runs: List[dict], candidates: List[dict]):
    """A kept run of a candidate of this command must be of the same
    attention (a genotype file edited since is not the same candidate)."""
    by_name = {c['name']: c for c in candidates}
    for r in runs:
        c = by_name.get(r['candidate'])
        if c is not None and (c['attention'] != r['attention'] or
                              c['kind'] != r['kind']):
            _bad(path, f'its runs of candidate {r["candidate"]!r} trained '
                       f'the attention {r["attention"]}, but '
                       f'{r["candidate"]!r} is now {c["attention"]}')


# ------------------------------------------------------------ statistics
def summarize(runs: List[dict], order: Sequence[str]) -> Dict[str, dict]:
    """Each candidate's ``mean``, ``std``, ``n``, seeds, parameters and its
    paired differences ``vs_none`` and ``vs_random`` (the mean of the
    random candidates per seed), in ``order`` (then any other)."""
    from sase_mm.apis.study_stats import (mean_by_seed, mean_std,
                                          paired_difference)
    names = list(order) + [r['candidate'] for r in runs
                           if r['candidate'] not in order]
    names = [n for i, n in enumerate(names) if n not in names[:i]]
    acc = {n: {r['seed']: r['top1'] for r in runs if r['candidate'] == n}
           for n in names}
    first = {}
    for r in runs:
        first.setdefault(r['candidate'], r)
    none = acc.get('none', {})
    randoms = [acc[n] for n in names
               if n in first and first[n]['kind'] == 'random']
    random_mean = mean_by_seed(randoms)
    out = {}
    for n in names:
        if n not in first:
            continue  # no finished run yet
        r = first[n]
        seeds = sorted(acc[n])
        stats = mean_std([acc[n][s] for s in seeds])
        out[n] = dict(
            kind=r['kind'], attention=r['attention'],
            genotype=r['genotype'], params=r['params'], seeds=seeds,
            **stats,
            vs_none=None if n == 'none' else paired_difference(acc[n], none),
            vs_random=None if r['kind'] == 'random' else
            paired_difference(acc[n], random_mean))
    return out


# ------------------------------------------------------------ outputs
def _pm(v: Optional[float]) -> str:
    return '—' if v is None else f'{v:+.2f}'


def _diff(d: Optional[dict]) -> str:
    if d is None:
        return '—'
    ci = f' [{_pm(d["low"])}, {_pm(d["high"])}]' if d['low'] is not None \
        else ' (no interval)'
    return f'{_pm(d["mean"])}{ci} (n={d["n"]})'


def describe(c: dict) -> str:
    """A candidate's attention in words."""
    if c['kind'] == 'none':
        return 'no attention'
    if c['genotype'] is not None:
        how = dict(file='searched (from the file)', paper='the paper\'s',
                   random='random').get(c['kind'], '')
        return f'SASE, {how} genotype: {", ".join(c["genotype"])}'
    return c['attention']['type']


def markdown(state: dict, summary: Dict[str, dict]) -> str:
    """``results.md``: the table and how it was made."""
    setup = state['setup']
    randoms = [n for n, s in summary.items() if s['kind'] == 'random']
    lines = [
        f'# Genotype study: `{setup["config"]}`', '',
        f'The config\'s fixed network ({setup["network"]}) trained with each '
        f'candidate attention on its train and search halves together for '
        f'{setup["epochs"]} epoch(s), one run per seed; held-out top-1 '
        f'accuracy (%). Differences are paired by seed (a seed trains every '
        f'candidate on the same order of batches), with 95% Student-t '
        f'intervals (n - 1 degrees of freedom; none for n = 1); the '
        f'random reference is, per seed, the mean of the random blocks '
        f'({", ".join(randoms) or "none in this study"}).', '',
        '| candidate | params | top-1 mean ± std (n) | − none | '
        '− random mean |', '|---|---:|---|---|---|']
    for n, s in summary.items():
        std = f' ± {s["std"]:.2f}' if s['std'] is not None else ''
        lines.append(f'| {n} | {s["params"]:,} | {s["mean"]:.2f}{std} '
                     f'(n={s["n"]}) | {_diff(s["vs_none"])} | '
                     f'{_diff(s["vs_random"])} |')
    lines += ['', 'Candidates:', '']
    lines += [f'- {n}: {describe(s)}' for n, s in summary.items()]
    lines += ['', f'Command: `{setup["command"]}`  ',
              f'Machine: {setup["machine"]}; written '
              f'{setup["written"]}.', '']
    return '\n'.join(lines)


def plot(summary: Dict[str, dict], runs: List[dict], title: str,
         path: str) -> None:
    """Each candidate's runs as points, its mean and std as a bar (Agg,
    atomic)."""
    from matplotlib.figure import Figure

    from sase_mm.visualization.alpha_plots import save_figure
    names = list(summary)
    fig = Figure(figsize=(max(5, 1.1 * len(names) + 2), 4.5),
                 layout='constrained')
    ax = fig.subplots()
    for x, n in enumerate(names):
        pts = sorted((r['seed'], r['top1']) for r in runs
                     if r['candidate'] == n)
        # Seeds side by side, so equal accuracies stay visible.
        offs = [0.25 * (i / max(1, len(pts) - 1) - 0.5) if len(pts) > 1
                else 0 for i in range(len(pts))]
        ax.scatter([x + o for o in offs], [p[1] for p in pts], s=18,
                   color='tab:blue', alpha=0.7, zorder=3,
                   label='one run (a seed)' if x == 0 else None)
        s = summary[n]
        ax.errorbar([x], [s['mean']], yerr=[[s['std'] or 0], [s['std'] or 0]],
                    fmt='_', ms=22, mew=2, color='black', capsize=6,
                    zorder=4, label='mean ± std' if x == 0 else None)
    ax.set_xticks(range(len(names)), names, rotation=30, ha='right')
    ax.set_ylabel('held-out top-1 (%)')
    ax.set_title(title, fontsize=10)
    ax.grid(axis='y', alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def write_outputs(work_dir: str, state: dict, order: Sequence[str]) -> dict:
    """Writes the three files (each atomically); returns the summary."""
    from sase_mm.utils.atomic import atomic_write_text
    summary = summarize(state['runs'], order)
    state = dict(state, candidates=summary)
    atomic_write_text(osp.join(work_dir, RESULTS_JSON),
                      json.dumps(state, indent=2))
    atomic_write_text(osp.join(work_dir, RESULTS_MD),
                      markdown(state, summary))
    setup = state['setup']
    plot(summary, state['runs'], f'{osp.basename(setup["config"])}: '
         f'{setup["epochs"]} epoch(s) per run', osp.join(work_dir,
                                                        RESULTS_PNG))
    return summary


# ------------------------------------------------------------ runs
def _duration(seconds: float) -> str:
    if seconds < 10:
        return f'{seconds:.1f} s'
    seconds = int(round(seconds))
    if seconds < 60:
        return f'{seconds} s'
    if seconds < 3600:
        return f'{seconds // 60} min {seconds % 60:02d} s'
    return f'{seconds // 3600} h {seconds % 3600 // 60:02d} min'


def top1_of(metrics: dict) -> float:
    """The top-1 accuracy among an evaluator's metrics."""
    if 'accuracy/top1' in metrics:
        return float(metrics['accuracy/top1'])
    keys = [k for k in metrics if k.endswith('top1')]
    if len(keys) != 1:
        raise StudyError(f'the val_evaluator gave no single top-1 accuracy '
                         f'(keys: {sorted(metrics)}); use '
                         f'sase_mm.TopKAccuracy or mmpretrain\'s Accuracy')
    return float(metrics[keys[0]])


def train_one(cfg, rec: dict, candidate: dict, seed: int,
              work_dir: str) -> dict:
    """Trains and evaluates one (candidate, seed); returns its record."""
    from sase_mm.apis.fixed_network import run_config
    from sase_mm.utils.unwrap import unwrap_model
    run_dir = osp.join(work_dir, 'runs', run_dir_name(candidate['name']),
                       f'seed_{seed}')
    # Unique: mmengine looks loggers and visualizers up by this name.
    name = f'{run_dir_name(candidate["name"])}_seed{seed}_' \
        f'{uuid.uuid4().hex[:8]}'
    runner = tool_args.build_runner(run_config(
        cfg, rec, candidate['attention'], seed, run_dir, name))
    params = sum(p.numel() for p in unwrap_model(runner.model).parameters())
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    top1 = top1_of(runner.val())
    return dict(candidate=candidate['name'], kind=candidate['kind'],
                attention=candidate['attention'],
                genotype=candidate['genotype'], seed=seed, top1=top1,
                params=params, train_seconds=round(seconds, 3),
                work_dir=osp.relpath(run_dir, work_dir),
                **({'random': candidate['random']}
                   if 'random' in candidate else {}))


def machine() -> str:
    import torch
    return (f'{platform.machine()}, {os.cpu_count()} CPUs, torch '
            f'{torch.__version__} '
            f'({torch.get_num_threads()} threads)' +
            (f', {torch.cuda.get_device_name()}' if torch.cuda.is_available()
             else ''))


# ------------------------------------------------------------ command line
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a search config\'s fixed network with each '
        'candidate attention (a searched genotype, the paper\'s, zoo '
        'modules, none, random blocks) for several seeds, and compare them')
    parser.add_argument('config', help='a search config, e.g. '
                        'configs/search/sase_r8_digits.py')
    tool_args.add_common_args(
        parser, 'where the results and each run go (default: '
        'work_dirs/<config name>_genotypes)',
        'train_dataloader.batch_size=32 log_level=WARNING')
    parser.add_argument(
        '--candidates', nargs='+', default=list(DEFAULT_CANDIDATES),
        metavar='CANDIDATE',
        help='genotype files (.json / .py), paper, none, random:K, or zoo '
        'modules by lower-case name (se, eca, cbam, ...); default: '
        f'{" ".join(DEFAULT_CANDIDATES)}')
    parser.add_argument('--seeds', type=int, default=3,
                        help='run seeds 0..S-1 (default 3)')
    parser.add_argument('--epochs', type=int, default=None,
                        help='epochs per run (default: the config\'s '
                        'train_cfg.max_epochs); the weight schedulers are '
                        'rescaled to them')
    return tool_args.parse(parser, argv)


def main(argv=None) -> dict:
    """Runs the study; returns ``dict(runs, candidates)`` (the contents of
    results.json)."""
    from sase_mm.apis.fixed_network import FixedNetworkError
    args = parse_args(argv)
    try:
        return _study(args, argv)
    except (StudyError, FixedNetworkError) as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(1)


def _study(args, argv) -> dict:
    from sase_mm.apis.fixed_network import (fixed_network, recipe,
                                            recipe_hash)
    if args.seeds < 1:
        raise StudyError(f'--seeds must be >= 1 (runs seeds 0..S-1), got '
                         f'{args.seeds}')
    if args.epochs is not None and args.epochs < 1:
        raise StudyError(f'--epochs must be >= 1, got {args.epochs}')
    if args.launcher != 'none':
        raise StudyError('the study runs in one process (--launcher none): '
                         'its runs are small; run several studies at once '
                         'for more')
    if not osp.isfile(args.config):
        raise StudyError(f'config {args.config!r} does not exist')
    if args.work_dir is None:
        args.work_dir = osp.join('work_dirs', osp.splitext(
            osp.basename(args.config))[0] + '_genotypes')
    cfg = tool_args.load_config(args)
    rec = recipe(cfg, args.epochs, args.config)
    search_attn = fixed_network(cfg, args.config).get('attn_cfg')
    candidates = resolve_candidates(args.candidates, search_attn)
    work_dir = args.work_dir
    command = 'python tools/analysis/evaluate_genotypes.py ' + shlex.join(
        sys.argv[1:] if argv is None else list(argv))
    setup = dict(config=args.config, epochs=rec['epochs'],
                 network=rec['network']['type'],
                 recipe_sha256=recipe_hash(rec), random_seed=RANDOM_SEED,
                 command=command, machine=machine())
    runs = read_results(osp.join(work_dir, RESULTS_JSON), setup)
    check_kept(osp.join(work_dir, RESULTS_JSON), runs, candidates)
    os.makedirs(work_dir, exist_ok=True)
    order = [c['name'] for c in candidates]
    # Seed by seed: a study stopped early still has complete pairs.
    todo = [(c, s) for s in range(args.seeds) for c in candidates]
    done = {(r['candidate'], r['seed']) for r in runs}
    total, kept = len(todo), sum((c['name'], s) in done for c, s in todo)
    print(f'{PREFIX} {total} runs ({len(candidates)} candidates x '
          f'{args.seeds} seeds, {rec["epochs"]} epoch(s) each) in '
          f'{work_dir}; ' + (f'{kept} finished, kept from {RESULTS_JSON}'
                             if kept else 'none finished yet'), flush=True)
    spent, ran = 0.0, 0
    state = dict(format=FORMAT, setup=setup, runs=runs)
    for i, (c, seed) in enumerate(todo, 1):
        if (c['name'], seed) in done:
            continue
        what = f'run {i} of {total} ({c["name"]}, seed {seed})'
        print(f'{PREFIX} {what} ...', flush=True)
        start = time.perf_counter()
        record = train_one(cfg, rec, c, seed, work_dir)
        spent += time.perf_counter() - start
        ran += 1
        runs.append(record)
        done.add((c['name'], seed))
        setup['written'] = datetime.datetime.now().isoformat(
            timespec='seconds')
        write_outputs(work_dir, state, order)
        left = sum((cc['name'], s) not in done for cc, s in todo)
        eta = f'ETA {_duration(spent / ran * left)}' if left else 'done'
        print(f'{PREFIX} {what}: top-1 {record["top1"]:.2f}%, '
              f'{record["params"]:,} params, trained in '
              f'{_duration(record["train_seconds"])}; {left} left, {eta}',
              flush=True)
    if ran == 0 and runs:  # nothing new: the files from what is kept
        setup['written'] = datetime.datetime.now().isoformat(
            timespec='seconds')
        write_outputs(work_dir, state, order)
    summary = summarize(runs, order)
    if summary:
        print(markdown(dict(state, candidates=summary), summary))
    print(f'{PREFIX} written: ' + ', '.join(
        osp.join(work_dir, f) for f in (RESULTS_JSON, RESULTS_MD,
                                        RESULTS_PNG)))
    return dict(runs=runs, candidates=summary)


if __name__ == '__main__':
    tool_args.run_main(main)
