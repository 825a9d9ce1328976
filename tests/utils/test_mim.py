"""utils/mim.py: ``sase_mm::`` config paths in mmengine, by ``_base_`` and
by ``mmengine.hub.get_config`` (SASE, arXiv 2411.08333, downstream
configs), from the imported package's own ``.mim`` (the checkout's, when
installed editable).

Run in a fresh Python outside the checkout, as a user's script runs: inside
it, the checkout's ``sase_mm.egg-info`` on ``sys.path`` would let mmengine
find the package by itself and hide what ``import sase_mm`` must fix."""
import json
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from sase_mm.utils.mim import package_dir

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = ('faster_rcnn/sase_r50_fpn_1x_coco.py', 'search/sase_r8_digits.py')
SCRIPT = '''
import json
import sase_mm
from mmengine.config import Config
from mmengine.hub import get_config
out = dict(package=sase_mm.__file__)
for rel in {configs!r}:
    cfg = get_config('sase_mm::' + rel)
    out[rel] = [cfg.filename, cfg.model.type]
cfg = get_config('sase_mm::imagenet/sase_r50_8xb16_in1k.py', pretrained=True)
out['pretrained'] = ['model_path' in cfg, cfg.get('model_path', 0)]
cfg = Config.fromfile('child.py')
out['base'] = [cfg.model.type, cfg.train_cfg.max_epochs]
print(json.dumps(out))
'''


@pytest.fixture(scope='module')
def fresh(tmp_path_factory):
    """What a fresh Python in a folder of its own gets after ``import
    sase_mm``."""
    cwd = tmp_path_factory.mktemp('user')
    (cwd / 'child.py').write_text(
        "_base_ = 'sase_mm::search/sase_r8_digits.py'\n"
        "train_cfg = dict(max_epochs=3)\n")
    res = subprocess.run(
        [sys.executable, '-c', SCRIPT.format(configs=CONFIGS)],
        capture_output=True, text=True, cwd=str(cwd), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_the_package_under_test(fresh):
    assert osp.dirname(fresh['package']) == package_dir()


@pytest.mark.parametrize('rel', CONFIGS)
def test_get_config_after_import_sase_mm(fresh, rel):
    own = osp.join(REPO, 'configs', rel)
    filename, model_type = fresh[rel]
    assert osp.realpath(filename) == osp.realpath(own)
    assert model_type == Config.fromfile(own).model.type


def test_get_config_reads_the_metafile_entry(fresh):
    """The config is found through .mim/model-index.yml and the metafile it
    imports: ``pretrained=True`` gives the entry's ``Weights`` (none is
    released: null)."""
    assert fresh['pretrained'] == [True, None]
    index = osp.join(package_dir(), '.mim', 'model-index.yml')
    assert open(index).read() == open(osp.join(REPO,
                                               'model-index.yml')).read()


def test_base_resolves_the_same_configs(fresh):
    assert fresh['base'] == ['sase_mm.DARTSSearch', 3]
