"""The model zoo tables of sase_mm, generated from its OpenMMLab metafiles.

SASE (*Searching Architecture for Squeeze and Excitation operations*, arXiv
2411.08333). ``model-index.yml`` at the repository root imports one
``metafile.yml`` per config folder (OpenMMLab's format: ``Collections`` and
``Models`` with ``Config``, ``Metadata`` (``Parameters``, ``FLOPs``),
``Results`` and ``Weights``). The results are the figures the paper reports
(docs/spec.md section 6), marked ``Source: paper``; parameters and FLOPs are
what ``tools/analysis/complexity.py`` counts. This tool renders them as
Markdown tables into ``docs/model_zoo.md`` and into README.md between the
lines ``<!-- model-zoo:start -->`` and ``<!-- model-zoo:end -->`` (nothing
else of README.md is touched; without the markers only docs/model_zoo.md is
written, and the tool says so).

``--update-complexity`` recounts every listed model's parameters with
complexity.py (seconds per model) and rewrites the metafiles; with
``--flops`` it recounts the FLOPs too (classifiers at 224 x 224, detectors
at 800 x 1333, search supernets at 32 x 32: about a minute per detector on
a CPU).

Usage::

    python tools/misc/gen_model_zoo.py              # write the tables
    python tools/misc/gen_model_zoo.py --check      # exit 1 if stale
    python tools/misc/gen_model_zoo.py --update-complexity [--flops]
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List, Optional, Tuple

import yaml

#: The checkout whose model index and metafiles are read by default.
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

START = '<!-- model-zoo:start -->'
END = '<!-- model-zoo:end -->'
INDEX = 'model-index.yml'
ZOO_DOC = osp.join('docs', 'model_zoo.md')
#: Input size of the FLOPs, by config folder (complexity.py's --shape).
FLOPS_SHAPES = {'imagenet': (224, 224), 'faster_rcnn': (800, 1333),
                'mask_rcnn': (800, 1333), 'search': (32, 32)}
METAFILE_HEADER = (
    '# sase_mm model zoo (SASE, arXiv 2411.08333), OpenMMLab metafile.\n'
    '# Results: as reported by the paper (docs/spec.md section 6), not\n'
    '# reproduced by this repository (`Source: paper`). Parameters (all of\n'
    '# the model\'s) and FLOPs (multiply-adds; classifiers at 224x224,\n'
    '# detectors at 800x1333, search supernets at 32x32): counted by\n'
    '# tools/analysis/complexity.py; refresh with\n'
    '#   python tools/misc/gen_model_zoo.py --update-complexity [--flops]\n'
    '# Weights: null = no released checkpoint (docs/downstream.md trains\n'
    '# them).\n'
    '# The tables of README.md and docs/model_zoo.md:\n'
    '#   python tools/misc/gen_model_zoo.py\n')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Render the model zoo tables (README.md, '
        'docs/model_zoo.md) from model-index.yml and the metafiles')
    parser.add_argument('--root', default=REPO,
                        help='repository root (default: this checkout)')
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 when a table is stale')
    parser.add_argument(
        '--update-complexity', action='store_true',
        help='recount Parameters with tools/analysis/complexity.py and '
        'rewrite the metafiles (then render the tables)')
    parser.add_argument('--flops', action='store_true',
                        help='with --update-complexity: recount FLOPs too '
                        '(slow for detectors)')
    return parser.parse_args(argv)


# ------------------------------------------------------------ metafiles
def metafile_paths(root: str = REPO) -> List[str]:
    """The metafiles model-index.yml imports (relative to ``root``)."""
    with open(osp.join(root, INDEX)) as f:
        index = yaml.safe_load(f) or {}
    return list(index.get('Import') or [])


def load_metafile(path: str) -> dict:
    with open(path) as f:
        return yaml.safe_load(f) or {}


def load_zoo(root: str = REPO) -> List[Tuple[str, dict]]:
    """[(metafile path relative to root, its content)] in index order."""
    return [(rel, load_metafile(osp.join(root, rel)))
            for rel in metafile_paths(root)]


def all_models(root: str = REPO) -> List[dict]:
    return [m for _, meta in load_zoo(root) for m in meta.get('Models', [])]


class _NoAliasDumper(yaml.SafeDumper):
    """Writes a repeated value (the shared ``Paper``) out each time, not
    as a YAML anchor."""

    def ignore_aliases(self, data):
        return True


def dump_metafile(meta: dict, path: str) -> None:
    """Writes a metafile: the header comment, then the YAML (key order
    kept)."""
    from sase_mm.utils.atomic import atomic_write_text
    text = yaml.dump(meta, Dumper=_NoAliasDumper, sort_keys=False,
                     allow_unicode=True, width=79, default_flow_style=False)
    atomic_write_text(path, METAFILE_HEADER + text)


def flops_shape(config: str) -> Tuple[int, int]:
    """The input size of a config's FLOPs (by its folder under configs/)."""
    parts = config.replace('\\', '/').split('/')
    folder = parts[1] if len(parts) > 2 and parts[0] == 'configs' else ''
    return FLOPS_SHAPES.get(folder, (224, 224))


def _complexity_tool():
    from sase_mm.apis.tool_args import load_tool
    return load_tool('analysis/complexity')


def count_model(config: str, root: str = REPO, flops: bool = False) -> dict:
    """complexity.py's ``count`` of a metafile's ``Config`` (relative to
    ``root``): ``params``, ``flops`` (None unless ``flops``), ``shape``."""
    import sase_mm  # noqa: F401  sase_mm's types and configs
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(root, config))
    return _complexity_tool().count(cfg, flops_shape(config), flops=flops)


def update_complexity(root: str = REPO, flops: bool = False) -> None:
    for rel, meta in load_zoo(root):
        for model in meta.get('Models', []):
            res = count_model(model['Config'], root, flops)
            md = model.setdefault('Metadata', {})
            md['Parameters'] = int(res['params'])
            if flops:
                md['FLOPs'] = int(res['flops'])
            print(f'{model["Name"]}: {res["params"]:,} parameters'
                  f'{", %d FLOPs" % res["flops"] if flops else ""}',
                  flush=True)
        dump_metafile(meta, osp.join(root, rel))


# --------------------------------------------------------------- tables
def _number(value: Optional[float], scale: float) -> str:
    if value is None:
        return '-'
    v = value / scale
    return f'{v:.1f}' if v >= 100 else f'{v:.2f}' if v >= 0.1 else f'{v:.3f}'


_SHORT = {'Top 1 Accuracy': 'top-1', 'Top 5 Accuracy': 'top-5',
          'Genotype': 'genotype'}


def _results(model: dict) -> str:
    cells = []
    for res in model.get('Results') or []:
        for metric, value in (res.get('Metrics') or {}).items():
            value = f'{value:.2f}' if isinstance(value, float) and \
                res.get('Task') == 'Image Classification' else value
            cells.append(f'{_SHORT.get(metric, metric)} {value}')
    return ', '.join(cells) if cells else '-'


def _dataset(model: dict, collection: dict) -> str:
    sets = [r.get('Dataset') for r in model.get('Results') or []]
    data = model.get('Metadata', {}).get('Training Data') or \
        collection.get('Metadata', {}).get('Training Data')
    return ' / '.join(dict.fromkeys(s for s in sets if s)) or str(data or '')


def render_tables(root: str = REPO, link_prefix: str = '') -> str:
    """The Markdown tables, one per collection (links relative to the
    file they go in: ``link_prefix`` is its path back to the root)."""
    out = []
    for rel, meta in load_zoo(root):
        collections = {c['Name']: c for c in meta.get('Collections', [])}
        groups: Dict[str, List[dict]] = {}
        for model in meta.get('Models', []):
            groups.setdefault(model.get('In Collection', ''), []).append(
                model)
        for name, models in groups.items():
            coll = collections.get(name, {})
            cmd = coll.get('Metadata', {})
            what = [str(cmd[k]) for k in ('Training Data',) if k in cmd]
            if 'Epochs' in cmd:
                what.append(f'{cmd["Epochs"]} epochs')
            if 'Batch Size' in cmd:
                what.append(f'batch {cmd["Batch Size"]}')
            out.append(f'**{name}** ({", ".join(what)}; '
                       f'[{rel}]({link_prefix}{rel}))\n')
            shape = flops_shape(models[0]['Config'])
            out.append(f'| model | params (M) | GFLOPs ({shape[0]}x'
                       f'{shape[1]}) | dataset | reported by the paper | '
                       f'weights |')
            out.append('|---|---|---|---|---|---|')
            for m in models:
                md = m.get('Metadata', {})
                config = m['Config']
                weights = m.get('Weights')
                out.append(
                    f'| [{m["Name"]}]({link_prefix}{config}) '
                    f'| {_number(md.get("Parameters"), 1e6)} '
                    f'| {_number(md.get("FLOPs"), 1e9)} '
                    f'| {_dataset(m, coll)} | {_results(m)} '
                    f'| {"[download](%s)" % weights if weights else "none"} |')
            out.append('')
    return '\n'.join(out).rstrip() + '\n'


def render_doc(root: str = REPO) -> str:
    """docs/model_zoo.md."""
    return (
        '# Model zoo\n\n'
        '<!-- Generated by tools/misc/gen_model_zoo.py from model-index.yml '
        'and configs/*/metafile.yml; do not edit. -->\n\n'
        'Every config of the repository, from its OpenMMLab metafile '
        '(`model-index.yml` imports one `metafile.yml` per config folder). '
        '"Reported by the paper" are the figures of SASE (arXiv 2411.08333, '
        'docs/spec.md section 6), not results of this repository. '
        'Parameters (all of the model\'s, frozen ones included) and FLOPs '
        '(multiply-adds, mmengine\'s counter; RoIAlign and NMS count 0) are '
        'counted by `tools/analysis/complexity.py`. "-": docs/spec.md does '
        'not record the paper\'s figure for that model (its tables compare '
        'the attention baselines; section 6 keeps the plain and SASE '
        'models). No checkpoint is released ("none"): docs/downstream.md '
        'trains them. Detector rows count all parameters; the paper\'s '
        'plain-detector figures leave out the frozen stem and stage 1 '
        '(0.23 M; docs/downstream.md).\n\n'
        + render_tables(root, link_prefix='../'))


def render_readme_section(root: str = REPO) -> str:
    """What goes between the README markers (markers excluded)."""
    return ('\n<!-- Generated by tools/misc/gen_model_zoo.py; edit the '
            'metafiles, not this table. -->\n\n'
            'Results as reported by the paper (not reproduced here); '
            'parameters and FLOPs from `tools/analysis/complexity.py`; '
            'details in [docs/model_zoo.md](docs/model_zoo.md).\n\n'
            + render_tables(root) + '\n')


def replace_section(text: str, section: str) -> Optional[str]:
    """``text`` with the lines between the markers replaced (None when the
    markers are absent or out of order)."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start:
        return None
    return text[:start + len(START)] + section + text[end:]


def generate(root: str = REPO, check: bool = False) -> Dict[str, bool]:
    """Writes (or, with ``check``, compares) the two tables.

    Returns:
        dict: path -> whether it was current (True) or stale / rewritten
        (False); README.md is absent when it has no markers.
    """
    from sase_mm.utils.atomic import atomic_write_text
    status = {}
    doc_path = osp.join(root, ZOO_DOC)
    doc = render_doc(root)
    old = open(doc_path).read() if osp.isfile(doc_path) else None
    status[ZOO_DOC] = old == doc
    if not check and old != doc:
        atomic_write_text(doc_path, doc)
    readme_path = osp.join(root, 'README.md')
    readme = open(readme_path).read() if osp.isfile(readme_path) else ''
    new = replace_section(readme, render_readme_section(root))
    if new is None:
        print(f'README.md has no `{START}` ... `{END}` lines: only '
              f'{ZOO_DOC} is {"checked" if check else "written"}')
    else:
        status['README.md'] = new == readme
        if not check and new != readme:
            atomic_write_text(readme_path, new)
    return status


def main(argv=None):
    args = parse_args(argv)
    if args.flops and not args.update_complexity:
        raise SystemExit('--flops goes with --update-complexity')
    if args.update_complexity:
        update_complexity(args.root, args.flops)
    status = generate(args.root, check=args.check)
    for path, current in status.items():
        what = 'current' if current else 'stale' if args.check else 'written'
        print(f'{path}: {what}')
    if args.check and not all(status.values()):
        print('run `python tools/misc/gen_model_zoo.py` to update',
              file=sys.stderr)
        sys.exit(1)
    return status


if __name__ == '__main__':
    main()
