"""The GPU check's rehearsal (tools/device/gpu_check.sh, docs/gpu.md).

The check measures SASE (arXiv 2411.08333) on a lent GPU machine, where
device time is scarce, so it is rehearsed here: on a machine without CUDA
it runs end to end, every section runs what needs no GPU and reports
``skipped`` naming the missing CUDA device, and its JSON and log are
written all the same. Also: the offline install of a wheels folder, the
time budget, and the parsers of what pytest and the search print.
"""
import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, 'tools', 'device', 'gpu_check.sh')
SECTIONS = ['environment', 'cuda_tests', 'step_float16', 'step_bfloat16',
            'step_float32', 'search_first_order', 'search_second_order',
            'compile']
pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(),
    reason='a CUDA device is present: the check would measure for minutes '
    'instead of rehearsing')


def load_check():
    """tools/device/gpu_check.py as a module (tools is no package)."""
    spec = importlib.util.spec_from_file_location(
        'gpu_check', os.path.join(REPO, 'tools', 'device', 'gpu_check.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rehearse(tmp):
    """One rehearsal, without a wheels folder; the CUDA tests looked for in
    one file to keep it short (the section's command is the same)."""
    out = tmp / 'out'
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    run = subprocess.run(
        ['bash', SCRIPT, str(out), '--work-dir', str(tmp / 'work'),
         '--wheels', str(tmp / 'no_wheels'),
         '--tests', 'tests/models/sase/test_blocks.py'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert sorted(os.listdir(out)) == ['gpu_check.json', 'gpu_check.log']
    report = json.loads((out / 'gpu_check.json').read_text())
    return run.stdout, report, (out / 'gpu_check.log').read_text()


def test_rehearsal_without_cuda(tmp_path):
    """One run (about 30 s), three things checked: it ends and says why
    each section skipped; it reports the missing wheels folder; each
    section ran its command in the form that needs no GPU."""
    stdout, report, log = rehearse(tmp_path)
    _ends_and_says_why_each_section_skipped(stdout, report, log)
    _reports_the_missing_wheels_folder(report, log)
    _ran_each_sections_command(report, log)


def _ends_and_says_why_each_section_skipped(stdout, report, log):
    assert report['finished'] is True
    assert report['mode'] == 'rehearsal'
    assert report['order'] == SECTIONS
    assert list(report['sections']) == SECTIONS
    env = report['sections']['environment']
    assert env['status'] == 'ok' and env['cuda'] is False
    assert env['modules']['sase_mm']['ok'] is True
    for name in SECTIONS[1:]:
        entry = report['sections'][name]
        assert entry['status'] == 'skipped', (name, entry)
        assert entry['reason'].startswith('no CUDA device'), (name, entry)
        assert entry['rehearsal'], name
        assert f'{name}: skipped (no CUDA device' in log
        assert f'{name:<20} skipped  no CUDA device' in stdout
    assert report['targets'] == []
    assert 'rehearsal: no CUDA device' in log


def _reports_the_missing_wheels_folder(report, log):
    install = report['sections']['environment']['install']
    assert install['installed'] == [] and install['site'] is None
    assert 'no wheels folder' in install['note']
    assert 'make device-wheels' in install['note']
    assert 'using the installed stack' in log


def _ran_each_sections_command(report, log):
    s = report['sections']
    tests = s['cuda_tests']['figures']
    # test_blocks.py's CUDA variants, collected and skipped by pytest
    assert tests['counts']['skipped'] >= 1
    assert 'passed' not in tests['counts']
    assert ' skipped' in tests['result_line']
    assert '-k' in s['cuda_tests']['command']
    for name in ('step_float16', 'step_bfloat16', 'step_float32',
                 'compile'):
        # benchmarks/gpu_step.py ran with the device's arguments and wrote
        # its own JSON, saying it had no device
        assert s[name]['figures']['status'] == 'skipped', name
        assert 'no CUDA device' in s[name]['figures']['reason']
        assert 'benchmarks/gpu_step.py' in s[name]['command']
    assert s['step_bfloat16']['command'][1:4] == ['--precision', 'bfloat16',
                                                  '--parts']
    assert 'compile' in s['compile']['command']
    for order, name in ((1, 'search_first_order'),
                        (2, 'search_second_order')):
        cmd = s[name]['command']
        assert cmd[:2] == ['tools/search.py',
                           'configs/search/sase_r8_digits.py']
        assert f'model.order={order}' in cmd
        assert s[name]['config_check'].startswith('ok')
    assert log.count('$ ') >= 7  # every command is in the log


def test_a_spent_budget_skips_a_section_and_says_so(tmp_path):
    gpu_check = load_check()
    check = gpu_check.Check(gpu_check.parse_args([
        '--out', str(tmp_path / 'out'), '--work-dir', str(tmp_path / 'w'),
        '--budget', '0.01']))
    called = []
    check.section('cuda_tests', lambda entry, limit: called.append(limit))
    check.close()
    assert called == []
    entry = check.report['sections']['cuda_tests']
    assert entry['status'] == 'skipped'
    assert entry['reason'].startswith('time budget')
    on_disk = json.loads((tmp_path / 'out' / 'gpu_check.json').read_text())
    assert on_disk['sections']['cuda_tests'] == entry
    assert on_disk['sections']['compile'] == {'status': 'pending'}


def _wheel(folder, name, files):
    """A minimal wheel of ``files`` ({path: text})."""
    dist = f'{name}-1.0.dist-info'
    files = dict(files)
    files[f'{dist}/METADATA'] = (f'Metadata-Version: 2.1\nName: {name}\n'
                                 f'Version: 1.0\n')
    files[f'{dist}/WHEEL'] = ('Wheel-Version: 1.0\nGenerator: test\n'
                              'Root-Is-Purelib: true\nTag: py3-none-any\n')
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(
            text.encode()).digest()).rstrip(b'=').decode()
        record.append(f'{path},sha256={digest},{len(text.encode())}')
    record.append(f'{dist}/RECORD,,')
    files[f'{dist}/RECORD'] = '\n'.join(record) + '\n'
    path = os.path.join(folder, f'{name}-1.0-py3-none-any.whl')
    with zipfile.ZipFile(path, 'w') as z:
        for p, text in files.items():
            z.writestr(p, text)
    return path


def test_wheels_install_offline_and_only_what_is_missing(tmp_path):
    gpu_check = load_check()
    wheel = _wheel(str(tmp_path), 'gpu_check_probe_pkg', {
        'gpu_check_probe_pkg/__init__.py': 'VALUE = 42\n',
        'tests/__init__.py': ''})
    name, version = gpu_check.wheel_name(wheel)
    assert (name, version) == ('gpu-check-probe-pkg', '1.0')
    tops = gpu_check.wheel_tops(wheel)
    assert tops == ['gpu_check_probe_pkg', 'tests']
    assert gpu_check.installed(name, tops) is None
    assert gpu_check.installed('pytest', ['pytest'])  # present: not again
    check = gpu_check.Check(gpu_check.parse_args([
        '--out', str(tmp_path / 'out'), '--work-dir', str(tmp_path / 'w')]))
    site = tmp_path / 'site'
    inst = {}
    check.install([wheel], str(site), inst, 120)
    check.close()
    assert 'error' not in inst, inst
    assert not (site / 'tests').exists()  # a wheel's own test suite
    env = dict(os.environ, PYTHONPATH=str(site))
    run = subprocess.run(
        [sys.executable, '-c', 'import gpu_check_probe_pkg as m; '
         'print(m.VALUE)'], env=env, capture_output=True, text=True,
        cwd=str(tmp_path), timeout=60)
    assert run.stdout.strip() == '42', run.stderr


def test_pytest_output_is_parsed_finished_or_cut_off():
    gpu_check = load_check()
    text = ('tests/a.py::test_x[cuda] PASSED\n'
            'tests/a.py::test_y[cuda] FAILED\n'
            'tests/b.py::test_z[cuda] SKIPPED (needs a CUDA device)\n'
            '=========== short test summary info ===========\n'
            'FAILED tests/a.py::test_y[cuda] - AssertionError\n'
            'ERROR tests/c.py - ModuleNotFoundError\n'
            '=== 1 failed, 1 passed, 1 skipped, 9 deselected, 1 error in '
            '3.21s ===\n')
    done = gpu_check.parse_pytest(text, True)
    assert done['counts'] == dict(failed=1, passed=1, skipped=1,
                                  deselected=9, errors=1)
    assert done['result_line'].startswith('1 failed, 1 passed')
    assert done['failures'] == ['tests/a.py::test_y[cuda]', 'tests/c.py']
    cut = gpu_check.parse_pytest(text.split('====')[0], False)
    assert cut['counts'] == dict(passed=1, failed=1, skipped=1)
    assert cut['result_line'].startswith('cut off after 3 tests')


def test_search_times_are_read_per_iteration(tmp_path):
    """mmengine's scalars.json as tools/search.py writes it: training
    lines (``loss``, ``time``), the alpha lines, the validation line."""
    gpu_check = load_check()
    lines = [dict(loss=2.3, loss_search=2.4, time=t, data_time=0.001,
                  epoch=1, iter=i + 1, step=i + 1)
             for i, t in enumerate([1.5, 0.4, 0.2, 0.25, 0.3, 0.2])]
    lines.insert(3, {'alpha/channel_squeeze/gap': 0.14, 'step': 3})
    lines.append({'accuracy/top1': 31.25, 'data_time': 0.0, 'time': 9.0,
                  'step': 1})
    stamp = tmp_path / '20260101_000000' / 'vis_data'
    stamp.mkdir(parents=True)
    (stamp / 'scalars.json').write_text(
        '\n'.join(json.dumps(x) for x in lines) + '\n')
    path = gpu_check.find_scalars(str(tmp_path))
    assert path == str(stamp / 'scalars.json')
    fig = gpu_check.parse_search_scalars(path)
    assert fig['iterations'] == 6 and fig['steady_iterations'] == 4
    assert fig['first_iter_s'] == 1.5
    assert fig['median_s'] == pytest.approx(0.225)
    assert fig['max_s'] == 0.3 and fig['min_s'] == 0.2
    (stamp / 'scalars.json').write_text(json.dumps(lines[3]) + '\n')
    with pytest.raises(ValueError, match='no training iteration'):
        gpu_check.parse_search_scalars(path)
