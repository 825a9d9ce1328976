"""Compare several SASE searches (seeds, settings): agreement and entropy.

SASE (arXiv 2411.08333) reports one search; how stable is its result? Given
the work dirs of several searches, this reads what ``GenotypeHook`` wrote in
each (``sase_mm/engine/genotype_hook.py``): the final genotype
(``genotype.json``, else ``genotype.py``) and the per-epoch softmax(alpha)
history (``alphas_history.json``), and writes, atomically, in ``--out-dir``:

* ``compare_searches.json``: for each edge the operations chosen and how
  often, the most chosen one and the fraction of searches that chose it
  (``agreement``), the fraction of pairs of searches that agree
  (``pairwise_agreement``), and each search's entropy of softmax(alpha_e) in
  nats per recorded epoch (``log 7 = 1.95`` is uniform, 0 decided);
* ``compare_searches.png``: each edge's entropy over the epochs, one line
  per search.

Every file is data from elsewhere: the genotype goes through the project's
loader (parsed, never executed), the history is checked for its form, its
edges and operations (this project's search space), finite probabilities
and its size; a bad file stops the tool with a message naming it.

Usage::

    python tools/analysis/compare_searches.py work_dirs/seed0 \\
        work_dirs/seed1 work_dirs/seed2 --out-dir work_dirs/compare
"""
import argparse
import itertools
import json
import math
import os
import os.path as osp
import sys
from collections import Counter
from typing import Dict, List, Sequence

HISTORY = 'alphas_history.json'
GENOTYPE_FILES = ('genotype.json', 'genotype.py')
OUT_JSON, OUT_PNG = 'compare_searches.json', 'compare_searches.png'
MAX_HISTORY_BYTES = 16 << 20


class SearchFileError(ValueError):
    """A search file that cannot be compared; names the file."""


def _fail(path: str, why: str):
    raise SearchFileError(f'cannot compare the search in {path!r}: {why}')


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and \
        math.isfinite(v)


def read_history(path: str) -> Dict:
    """``alphas_history.json``, checked: ``{'epochs': [int],
    'softmax_alphas': [(6, 7) lists]}`` of this search space.

    Raises:
        SearchFileError: naming ``path``, for any problem.
    """
    from sase_mm.models.sase import EDGES
    from sase_mm.utils.json_file import JSONFileError, read_json
    if not osp.isfile(path):
        _fail(path, f'no {HISTORY} (GenotypeHook writes it every epoch)')
    try:
        data = read_json(path, MAX_HISTORY_BYTES)
    except JSONFileError as err:
        _fail(path, str(err))
    keys = ('edges', 'ops', 'epochs', 'softmax_alphas')
    if not isinstance(data, dict) or any(k not in data for k in keys):
        _fail(path, f'expected a JSON object with the keys {list(keys)}')
    edges = [e.name for e in EDGES]
    ops = [list(e.op_set.names) for e in EDGES]
    if data['edges'] != edges or data['ops'] != ops:
        _fail(path, f'its edges / operations are not this search space\'s '
                    f'({edges}, each with its declared operations)')
    epochs, probs = data['epochs'], data['softmax_alphas']
    if not isinstance(epochs, list) or not epochs or not all(
            isinstance(e, int) and not isinstance(e, bool) and e >= 1
            for e in epochs) or any(a >= b for a, b in zip(epochs,
                                                             epochs[1:])):
        _fail(path, '"epochs" must be a non-empty, increasing list of '
                    'epoch numbers >= 1')
    if not isinstance(probs, list) or len(probs) != len(epochs):
        _fail(path, f'"softmax_alphas" must hold one (6, 7) table per epoch'
                    f' ({len(epochs)})')
    for epoch, table in zip(epochs, probs):
        where = f'softmax(alpha) of epoch {epoch}'
        if not isinstance(table, list) or len(table) != len(EDGES) or any(
                not isinstance(row, list) or len(row) != len(o)
                for row, o in zip(table, ops)):
            _fail(path, f'{where} is not a (6, 7) table')
        for e, row in zip(edges, table):
            if not all(_number(p) and -1e-6 <= p <= 1 + 1e-6 for p in row):
                _fail(path, f'{where}, edge {e}: probabilities must be '
                            f'finite numbers in [0, 1]')
            if abs(sum(row) - 1) > 1e-3:
                _fail(path, f'{where}, edge {e}: the probabilities sum to '
                            f'{sum(row):.4g}, not 1')
    return dict(epochs=epochs, softmax_alphas=probs)


def read_genotype(work_dir: str):
    """The final genotype of a search: ``genotype.json``, else
    ``genotype.py`` (through ``Genotype.load``: parsed, never executed)."""
    from sase_mm.models.sase import Genotype
    for name in GENOTYPE_FILES:
        path = osp.join(work_dir, name)
        if osp.isfile(path):
            try:
                return Genotype.load(path)
            except ValueError as err:  # names the file and what is wrong
                raise SearchFileError(str(err)) from None
    _fail(work_dir, f'no {" or ".join(GENOTYPE_FILES)} (the files '
                    f'GenotypeHook writes)')


def entropy(row: Sequence[float]) -> float:
    """Entropy in nats of one edge's softmax(alpha)."""
    return -sum(p * math.log(p) for p in row if p > 0)


def compare(work_dirs: Sequence[str]) -> Dict:
    """The comparison of the searches in ``work_dirs`` (module docstring)."""
    from sase_mm.models.sase import EDGES
    if not work_dirs:
        raise SearchFileError('give at least one work dir')
    searches = []
    for d in work_dirs:
        if not osp.isdir(d):
            _fail(d, 'not a directory')
        genotype = list(read_genotype(d))
        history = read_history(osp.join(d, HISTORY))
        searches.append(dict(work_dir=d, genotype=genotype,
                             epochs=history['epochs'],
                             probs=history['softmax_alphas']))
    n = len(searches)
    pairs = list(itertools.combinations(range(n), 2))
    edges = []
    for i, e in enumerate(EDGES):
        chosen = [s['genotype'][i] for s in searches]
        counts = Counter(chosen)
        mode, top = counts.most_common(1)[0]
        edges.append(dict(
            edge=e.name, counts=dict(counts), mode=mode, agreement=top / n,
            pairwise_agreement=(sum(chosen[a] == chosen[b]
                                    for a, b in pairs) / len(pairs))
            if pairs else None,
            entropy=[[entropy(t[i]) for t in s['probs']] for s in searches]))
    return dict(
        searches=[dict(work_dir=s['work_dir'], genotype=s['genotype'],
                       epochs=s['epochs']) for s in searches],
        identical_genotypes=len({tuple(s['genotype'])
                                 for s in searches}) == 1,
        max_entropy=math.log(len(EDGES[0].op_set)), edges=edges)


def plot(result: Dict, path: str) -> None:
    """Each edge's entropy over the epochs, one line per search (Agg,
    atomic)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from sase_mm.visualization.alpha_plots import save_figure
    fig = Figure(figsize=(13, 7), layout='constrained')
    axes = fig.subplots(2, 3, sharey=True).ravel()
    labels = _labels([s['work_dir'] for s in result['searches']])
    for ax, edge in zip(axes, result['edges']):
        for s, label, h in zip(result['searches'], labels, edge['entropy']):
            ax.plot(s['epochs'], h, marker='o', ms=3, label=label)
        ax.axhline(result['max_entropy'], ls='--', c='grey', lw=0.8)
        ax.set_title(f'{edge["edge"]}: {edge["agreement"]:.0%} chose '
                     f'{edge["mode"]}', fontsize=9)
        ax.set_xlabel('epoch')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis='y', useOffset=False)
    axes[0].set_ylabel('entropy of softmax(alpha) (nats)')
    axes[3].set_ylabel('entropy of softmax(alpha) (nats)')
    axes[0].legend(fontsize=7)
    fig.suptitle('SASE searches compared (dashed: uniform, log 7)')
    save_figure(fig, path)


def _labels(dirs: List[str]) -> List[str]:
    names = [osp.basename(osp.normpath(d)) for d in dirs]
    return names if len(set(names)) == len(names) else \
        [f'{i}: {n}' for i, n in enumerate(names)]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Compare the genotypes and alpha histories of several '
        'SASE searches (e.g. seeds)')
    parser.add_argument('work_dirs', nargs='+', metavar='WORK_DIR',
                        help='work dirs of searches (GenotypeHook\'s files)')
    parser.add_argument('--out-dir', default='work_dirs/compare_searches',
                        help=f'where {OUT_JSON} and {OUT_PNG} go')
    return parser.parse_args(argv)


def main(argv=None) -> Dict:
    args = parse_args(argv)
    from sase_mm.utils.atomic import atomic_write_text
    try:
        result = compare(args.work_dirs)
    except SearchFileError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(1)
    os.makedirs(args.out_dir, exist_ok=True)
    out_json = osp.join(args.out_dir, OUT_JSON)
    out_png = osp.join(args.out_dir, OUT_PNG)
    atomic_write_text(out_json, json.dumps(result, indent=2))
    plot(result, out_png)
    n = len(result['searches'])
    for edge in result['edges']:
        final = ' '.join(f'{h[-1]:.2f}' for h in edge['entropy'])
        print(f'{edge["edge"]:<22} {edge["agreement"]:>4.0%} of {n} chose '
              f'{edge["mode"]:<14} final entropy {final}')
    print(f'identical genotypes: {result["identical_genotypes"]}\n'
          f'written: {out_json}, {out_png}')
    return result


if __name__ == '__main__':
    main()
