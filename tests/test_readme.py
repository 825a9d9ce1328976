"""README.md's Python snippets run as written (SASE, arXiv 2411.08333):
the block example in a fresh process, the config fragments as configs."""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python_blocks():
    text = open(os.path.join(REPO, 'README.md')).read()
    return re.findall(r'```python\n(.*?)```', text, flags=re.S)


def test_block_snippet_runs():
    block = next(b for b in _python_blocks() if 'SASESearch(' in b)
    res = subprocess.run([sys.executable, '-c', block + '\nprint(y.shape, '
                          'type(fixed).__name__)'], capture_output=True,
                         text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'torch.Size([2, 256, 14, 14]) SASE' in res.stdout


def test_config_snippets_parse(tmp_path):
    from mmengine.config import Config
    for i, block in enumerate(b for b in _python_blocks()
                              if 'custom_imports' in b or 'model = ' in b):
        path = tmp_path / f'snippet_{i}.py'
        path.write_text(block)
        cfg = Config.fromfile(str(path))
        assert 'model' in cfg
