"""Every path by which sase_mm's tools read a user's file refuses the
crafted files (SASE, arXiv 2411.08333): checkpoints through tools/search.py
(``--resume PATH`` and the bare ``--resume``), tools/train.py (``--resume``,
``load_from``, a backbone's ``init_cfg=Pretrained``), tools/test.py,
tools/convert_reference_checkpoint.py and the API's ``init_weights``; the
CIFAR-10 search config's batches; a genotype file given by path (also a
search's genotype.py read by tools/analysis/compare_searches.py). The tools
run in one subprocess (tool_driver.py), each as its command line would."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from data_utils import make_imagenet_dataset, payloads
from data_utils.tool_runs import as_argv, config_path, imagenet_options

HERE = osp.dirname(osp.abspath(__file__))
IMAGENET = config_path('imagenet/sase_r50_8xb16_in1k.py')
CIFAR = config_path('search/sase_r20_cifar10.py')

CHECKPOINT_PATHS = ('search_resume_path', 'search_resume_auto',
                    'train_resume', 'train_load_from', 'train_pretrained',
                    'test', 'convert', 'api_pretrained')


def _cases(root: str):
    """(cases for the driver, {case name: (payload path, marker)})."""
    import sase_mm  # noqa: F401
    from mmengine.config import Config
    sys.path.insert(0, osp.join(osp.dirname(HERE), 'engine'))
    from tiny_search_cfg import tiny_search_cfg
    tiny = osp.join(root, 'tiny_search.py')
    Config(tiny_search_cfg(osp.join(root, 'unused'), max_epochs=1)).dump(tiny)
    data = osp.join(root, 'imagenet')
    make_imagenet_dataset(data, num_classes=2, images_per_class=1, size=40)
    opts = imagenet_options(Config.fromfile(IMAGENET), data, size=32)
    cases, expect = [], {}
    for kind, build in sorted(payloads.CHECKPOINT_PAYLOADS.items()):
        marker = osp.join(root, f'{kind}.ran')
        ckpt = build(osp.join(root, f'{kind}.pth'), marker)

        def add(where, **case):
            name = f'{where}-{kind}'
            cases.append(dict(name=name, **case))
            expect[name] = (ckpt, marker)

        work = osp.join(root, 'work', kind)
        add('search_resume_path', tool='search.py',
            argv=[tiny, '--work-dir', work + '_s', '--resume', ckpt])
        auto = work + '_auto'
        os.makedirs(auto, exist_ok=True)
        with open(osp.join(auto, 'last_checkpoint'), 'w') as f:
            f.write(ckpt)
        add('search_resume_auto', tool='search.py',
            argv=[tiny, '--work-dir', auto, '--resume'])
        train = ['--work-dir', work + '_t']
        add('train_resume', tool='train.py',
            argv=[IMAGENET] + train + ['--resume', ckpt] + as_argv(opts))
        add('train_load_from', tool='train.py',
            argv=[IMAGENET] + train + as_argv(dict(opts, load_from=ckpt)))
        add('train_pretrained', tool='train.py',
            argv=[IMAGENET] + train + as_argv(dict(opts, **{
                'model.backbone.init_cfg.type': 'Pretrained',
                'model.backbone.init_cfg.checkpoint': ckpt})))
        add('test', tool='test.py',
            argv=[IMAGENET, ckpt, '--work-dir', work + '_test'] +
            as_argv(opts))
        add('convert', tool='convert_reference_checkpoint.py',
            argv=[ckpt, osp.join(root, f'{kind}_converted.pth')])
        add('api_pretrained', api='pretrained', path=ckpt)

    marker = osp.join(root, 'cifar.ran')
    base = payloads.write_cifar_root(osp.join(root, 'cifar'),
                                     crafted_marker=marker)
    cifar_root = osp.join(root, 'cifar')
    cases.append(dict(name='cifar_search', tool='search.py', argv=[
        CIFAR, '--work-dir', osp.join(root, 'work', 'cifar')] + as_argv({
            'train_dataloader.dataset.data_root': cifar_root,
            'train_cfg.search_dataloader.dataset.data_root': cifar_root,
            'val_dataloader.dataset.data_root': cifar_root})))
    expect['cifar_search'] = (osp.join(base, 'data_batch_1'), marker)

    marker = osp.join(root, 'genotype.ran')
    code = payloads.code_genotype_py(osp.join(root, 'genotype.py'), marker)
    cases.append(dict(name='genotype_train', tool='train.py', argv=[
        IMAGENET, '--work-dir', osp.join(root, 'work', 'g')] + as_argv(dict(
            opts, **{'model.backbone.attn_cfg.genotype': code}))))
    cases.append(dict(name='genotype_api', api='genotype', path=code))
    expect['genotype_train'] = expect['genotype_api'] = (code, marker)

    # tools/analysis/compare_searches.py reads a search's genotype.py.
    marker = osp.join(root, 'genotype_compare.ran')
    compare = osp.join(root, 'work', 'compare')
    os.makedirs(compare, exist_ok=True)
    code = payloads.code_genotype_py(osp.join(compare, 'genotype.py'), marker)
    cases.append(dict(name='genotype_compare',
                      tool='analysis/compare_searches.py',
                      argv=[compare, '--out-dir', compare + '_out']))
    expect['genotype_compare'] = (code, marker)
    return cases, expect


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('security_tools'))
    cases, expect = _cases(root)
    spec, out = osp.join(root, 'cases.json'), osp.join(root, 'results.json')
    with open(spec, 'w') as f:
        json.dump(cases, f)
    res = subprocess.run(
        [sys.executable, osp.join(HERE, 'tool_driver.py'), spec, out],
        capture_output=True, text=True, cwd=root, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(out) as f:
        return json.load(f), expect


CASES = [f'{p}-{k}' for p in CHECKPOINT_PATHS
         for k in sorted(payloads.CHECKPOINT_PAYLOADS)] + [
             'cifar_search', 'genotype_train', 'genotype_api',
             'genotype_compare']  # compare_searches.py


@pytest.mark.parametrize('case', CASES)
def test_tool_refuses_and_runs_nothing(results, case):
    got, expect = results
    r = got[case]
    path, marker = expect[case]
    text = r['message'] + r['stderr']
    assert not osp.exists(marker), f'{case}: the payload ran'
    assert r['exit'] != 0, f'{case} ended with exit 0:\n{text[-1500:]}'
    assert path in text, f'{case}: the error does not name {path}:\n' + \
        text[-1500:]
    if case.startswith('genotype'):
        assert 'it is not executed' in text, text[-1500:]
    else:
        assert 'nothing in it was executed' in text, text[-1500:]
    if not case.startswith(('api', 'genotype')):
        # The command line ends with the message, not a traceback.
        assert r['exit'] == 1 and r['type'] is None, text[-1500:]
        assert 'error: ' in r['stderr'] and 'Traceback' not in r['stderr']
