"""The floors of sase_mm (SASE, arXiv 2411.08333): each package imports
only its own floor and those below, and no import closes a circle.

From the ground up: ``utils`` (services, nothing of sase_mm), ``registry``,
``models`` / ``datasets`` / ``evaluation``, ``visualization``, ``engine``,
``apis`` (the tools' shared code). Every import of a sase_mm module counts,
at module level or inside a function, relative or absolute, read from the
source with ``ast`` (nothing is imported)."""
import ast
import os
import os.path as osp
from typing import Dict, Set

import pytest

PKG = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'sase_mm')
FLOORS = {'utils': 0, 'version': 0, 'registry': 1, 'models': 2,
          'datasets': 2, 'evaluation': 2, 'visualization': 3, 'engine': 4,
          'apis': 5}


def _modules() -> Dict[str, str]:
    """Dotted module name -> source file, for every module of sase_mm."""
    out = {}
    for folder, _, files in os.walk(PKG):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                rel = osp.relpath(path, osp.dirname(PKG))[:-3]
                dotted = rel.replace(os.sep, '.')
                out[dotted[:-len('.__init__')] if dotted.endswith(
                    '.__init__') else dotted] = path
    return out


MODULES = _modules()


def _known(name: str) -> str:
    """The sase_mm module an imported name lives in."""
    while name not in MODULES:
        name = name.rpartition('.')[0]
    return name


def _imports(module: str) -> Set[str]:
    """The sase_mm modules ``module`` imports (its own ancestors aside)."""
    path = MODULES[module]
    package = module if path.endswith('__init__.py') else \
        module.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')
                parts = parts[:len(parts) - node.level + 1]
                base = '.'.join(parts + ([base] if base else []))
            names = [f'{base}.{a.name}' for a in node.names]
        else:
            continue
        found |= {_known(n) for n in names if n.split('.')[0] == 'sase_mm'}
    return {t for t in found if not (module + '.').startswith(t + '.')}


GRAPH = {m: _imports(m) for m in MODULES}


def _floor(module: str):
    parts = module.split('.')
    return FLOORS[parts[1]] if len(parts) > 1 else None


def test_every_package_has_a_floor():
    assert {m.split('.')[1] for m in MODULES if '.' in m} <= set(FLOORS)


def test_utils_imports_nothing_of_sase_mm_above_it():
    above = [f'{m} -> {t}' for m in GRAPH if m.startswith('sase_mm.utils')
             for t in GRAPH[m] if not t.startswith('sase_mm.utils')]
    assert above == []


@pytest.mark.parametrize('package', sorted(set(FLOORS) - {'version'}))
def test_no_import_runs_up(package):
    up = [f'{m} -> {t}' for m in GRAPH
          if m.startswith(f'sase_mm.{package}') for t in GRAPH[m]
          if _floor(t) is not None and _floor(t) > FLOORS[package]]
    assert up == []


def test_visualization_draws_without_the_engine():
    assert not [t for m in GRAPH if m.startswith('sase_mm.visualization')
                for t in GRAPH[m] if t.startswith(('sase_mm.engine',
                                                   'sase_mm.apis'))]


def test_no_circle():
    """Tarjan's strongly connected components: each of one module."""
    index, low, stack, on, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert circles == []
