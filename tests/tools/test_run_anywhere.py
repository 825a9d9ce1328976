"""The tools and benchmarks run as a user runs them, from any folder: they
import the installed sase_mm (``tools/setup_env.sh`` installs the checkout
editable) and change no import path themselves (SASE, arXiv 2411.08333)."""
import glob
import json
import os.path as osp
import subprocess
import sys
import textwrap

from data_utils.tool_runs import REPO

TOOLS = sorted(glob.glob(osp.join(REPO, 'tools', '**', '*.py'),
                         recursive=True))
BENCHMARKS = sorted(glob.glob(osp.join(REPO, 'benchmarks', '*.py')))


def test_no_tool_or_benchmark_changes_the_import_path():
    found = [osp.relpath(p, REPO) for p in TOOLS + BENCHMARKS
             if 'sys.path' in open(p).read()]
    assert found == []


def test_every_tool_prints_its_help_from_another_folder(tmp_path):
    """``python tools/X.py --help`` in a folder outside the checkout, each
    as the interpreter runs a script (its own folder first on the path),
    in one process for one import of the stack."""
    driver = textwrap.dedent('''
        import contextlib, io, json, os, runpy, sys
        out = {}
        base = list(sys.path[1:])
        for path in json.loads(sys.argv[1]):
            sys.path[:] = [os.path.dirname(path)] + base
            sys.argv = [path, '--help']
            text = io.StringIO()
            try:
                with contextlib.redirect_stdout(text):
                    runpy.run_path(path, run_name='__main__')
                code = 0
            except SystemExit as e:
                code = e.code
            except BaseException as e:
                code = f'{type(e).__name__}: {e}'
            out[path] = [code, text.getvalue().startswith('usage:')]
        print(json.dumps(out))
    ''')
    res = subprocess.run([sys.executable, '-c', driver, json.dumps(TOOLS)],
                         capture_output=True, text=True, cwd=str(tmp_path),
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    failed = {osp.relpath(p, REPO): r for p, r in got.items()
              if r != [0, True]}
    assert failed == {}
    assert len(got) == len(TOOLS) >= 14
