"""Runs sase_mm's tools as their command lines do, many in one process (one
stack import for all), and reports how each ended, as JSON.

Usage: ``python tool_driver.py CASES.json OUT.json``; CASES is a list of
``{"name", "tool", "argv"}`` (``tool`` relative to ``tools/``, run with
``runpy`` as ``__main__``) or ``{"name", "api": "pretrained"|"genotype",
"path"}``. Each result holds the exit status (0, the ``SystemExit`` code,
or 1 for an exception), the exception type and the message with stderr.
"""
import contextlib
import io
import json
import os
import runpy
import sys
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def run_tool(tool: str, argv):
    path = os.path.join(REPO, 'tools', tool)
    old = sys.argv
    sys.argv = [path] + list(argv)
    try:
        runpy.run_path(path, run_name='__main__')
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = old


def run_api(kind: str, path: str):
    import sase_mm  # noqa: F401
    from sase_mm.registry import MODELS
    if kind == 'pretrained':
        MODELS.build(dict(type='sase_mm.SASEResNet', depth=18, attn_cfg=None,
                          init_cfg=dict(type='Pretrained',
                                        checkpoint=path))).init_weights()
    else:
        from sase_mm.models.sase import SASE
        SASE(16, genotype=path)
    return 0


def main():
    cases = json.load(open(sys.argv[1]))
    results = {}
    for case in cases:
        err = io.StringIO()
        etype, message = None, ''
        with contextlib.redirect_stderr(err):
            try:
                if 'api' in case:
                    code = run_api(case['api'], case['path'])
                else:
                    code = run_tool(case['tool'], case['argv'])
            except BaseException as e:  # noqa: B902  report every ending
                code, etype = 1, type(e).__name__
                message = str(e) + '\n' + traceback.format_exc()[-1500:]
        results[case['name']] = dict(exit=code, type=etype,
                                     message=message,
                                     stderr=err.getvalue()[-3000:])
        from mmengine.registry import DefaultScope
        DefaultScope._instance_dict.clear()
    with open(sys.argv[2], 'w') as f:
        json.dump(results, f)


if __name__ == '__main__':
    main()
