"""The model zoo metadata (model-index.yml, configs/*/metafile.yml) and the
tables tools/misc/gen_model_zoo.py renders from it (SASE, arXiv 2411.08333;
results: docs/spec.md section 6, parameters: tools/analysis/complexity.py).
"""
import glob
import os
import os.path as osp
import re
import shutil

import pytest
import yaml

from data_utils.tool_runs import REPO, help_text, load_tool

zoo = load_tool('misc/gen_model_zoo')
MODELS = zoo.all_models(REPO)


def test_index_lists_every_config_and_nothing_else():
    listed = [m['Config'] for m in MODELS]
    on_disk = sorted(osp.relpath(p, REPO) for p in glob.glob(
        osp.join(REPO, 'configs', '**', '*.py'), recursive=True))
    assert sorted(listed) == on_disk
    assert len(set(listed)) == len(listed), 'a config is listed twice'
    names = [m['Name'] for m in MODELS]
    assert len(set(names)) == len(names), 'model names must be unique'
    # One metafile per config folder, each imported by model-index.yml.
    folders = {p.split('/')[1] for p in on_disk}
    assert sorted(zoo.metafile_paths(REPO)) == sorted(
        f'configs/{f}/metafile.yml' for f in folders)


def test_metafiles_have_the_openmmlab_fields():
    for rel, meta in zoo.load_zoo(REPO):
        collections = {c['Name']: c for c in meta['Collections']}
        for coll in collections.values():
            assert coll['Paper']['URL'] == 'https://arxiv.org/abs/2411.08333'
            assert osp.isfile(osp.join(REPO, coll['README'])), coll['README']
        for m in meta['Models']:
            assert m['In Collection'] in collections, (rel, m['Name'])
            assert osp.isfile(osp.join(REPO, m['Config'])), m['Config']
            assert m['Config'].startswith(osp.dirname(rel) + '/'), (
                f'{m["Config"]} is listed in {rel}, not in its own folder')
            md = m['Metadata']
            assert isinstance(md['Parameters'], int) and md['Parameters'] > 0
            assert isinstance(md['FLOPs'], int) and md['FLOPs'] > 0
            assert 'Weights' in m  # null: no released checkpoint
            for res in m.get('Results', []):
                assert set(res) == {'Task', 'Dataset', 'Metrics', 'Source'}
                assert res['Source'] == 'paper'


def _spec_accuracy_rows():
    """docs/spec.md section 6's accuracy table: row label -> numbers."""
    text = open(osp.join(REPO, 'docs', 'spec.md')).read()
    section = text.split('## 6.')[1].split('\n## ')[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 2 and '->' in cells[1]:
            rows[cells[0]] = [float(v) for v in
                              re.findall(r'\d+\.\d+', cells[1])]
    return rows


def test_results_are_the_papers_reported_figures():
    rows = _spec_accuracy_rows()
    by_name = {m['Name']: m for m in MODELS}

    def metrics(name):
        out = {}
        for res in by_name[name].get('Results', []):
            out.update(res['Metrics'])
        return out

    r50, r101 = (rows[f'ImageNet top-1 / top-5, R{d}'] for d in (50, 101))
    top = ('Top 1 Accuracy', 'Top 5 Accuracy')
    assert [metrics('r50_plain_8xb16_in1k')[k] for k in top] == r50[:2]
    assert [metrics('sase_r50_8xb16_in1k')[k] for k in top] == r50[2:]
    assert [metrics('sase_r101_8xb16_in1k')[k] for k in top] == r101[2:]
    # "baseline -> SASE" for R50 then R101.
    faster = rows['COCO box AP, Faster R-CNN R50 / R101']
    assert metrics('faster-rcnn_r50_plain_fpn_1x_coco')['box AP'] == faster[0]
    assert metrics('faster-rcnn_sase_r50_fpn_1x_coco')['box AP'] == faster[1]
    assert metrics('faster-rcnn_sase_r101_fpn_1x_coco')['box AP'] == faster[3]
    box = rows['COCO box AP, Mask R-CNN R50 / R101']
    mask = rows['COCO mask AP, Mask R-CNN R50 / R101']
    for d, i in ((50, 1), (101, 3)):
        got = metrics(f'mask-rcnn_sase_r{d}_fpn_1x_coco')
        assert (got['box AP'], got['mask AP']) == (box[i], mask[i])
    # Nothing else claims a number the spec does not record.
    with_results = {m['Name'] for m in MODELS if m.get('Results')}
    assert with_results == {
        'r50_plain_8xb16_in1k', 'sase_r50_8xb16_in1k', 'sase_r101_8xb16_in1k',
        'faster-rcnn_r50_plain_fpn_1x_coco',
        'faster-rcnn_sase_r50_fpn_1x_coco',
        'faster-rcnn_sase_r101_fpn_1x_coco', 'mask-rcnn_sase_r50_fpn_1x_coco',
        'mask-rcnn_sase_r101_fpn_1x_coco', 'sase_r20_cifar10_search'}


@pytest.mark.parametrize('model', MODELS, ids=[m['Name'] for m in MODELS])
def test_parameters_equal_the_models(model):
    """Every listed count is complexity.py's count of the config's model."""
    got = zoo.count_model(model['Config'], REPO, flops=False)['params']
    assert model['Metadata']['Parameters'] == got, (
        f'{model["Name"]}: metafile {model["Metadata"]["Parameters"]:,}, '
        f'model {got:,}; run python tools/misc/gen_model_zoo.py '
        f'--update-complexity')


def test_flops_of_one_config():
    """All FLOPs take half an hour on a CPU (each detector about a minute at
    800 x 1333; counted once with --update-complexity --flops); the SASE
    ResNet-50 classifier at 224 x 224 (seconds) is recounted here."""
    model = next(m for m in MODELS if m['Name'] == 'sase_r50_8xb16_in1k')
    got = zoo.count_model(model['Config'], REPO, flops=True)
    assert got['shape'] == (224, 224)
    assert model['Metadata']['FLOPs'] == got['flops']


def test_tables_are_current():
    status = zoo.generate(REPO, check=True)
    assert status[zoo.ZOO_DOC], (
        'docs/model_zoo.md is stale: python tools/misc/gen_model_zoo.py')
    assert status.get('README.md', True), (
        'the README zoo table is stale: python tools/misc/gen_model_zoo.py')


@pytest.fixture
def zoo_root(tmp_path):
    """A copy of the index and metafiles (and README-free docs)."""
    shutil.copy(osp.join(REPO, zoo.INDEX), tmp_path / zoo.INDEX)
    for rel in zoo.metafile_paths(REPO):
        os.makedirs(tmp_path / osp.dirname(rel), exist_ok=True)
        shutil.copy(osp.join(REPO, rel), tmp_path / rel)
    return tmp_path


def test_generator_replaces_only_the_marked_section(zoo_root, capsys):
    readme = zoo_root / 'README.md'
    before = f'# title\n\ntext above\n{zoo.START}\nold table\n{zoo.END}\n' \
        f'text below\n'
    readme.write_text(before)
    status = zoo.main(['--root', str(zoo_root)])
    assert status == {zoo.ZOO_DOC: False, 'README.md': False}  # written
    after = readme.read_text()
    head, rest = after.split(zoo.START)
    section, tail = rest.split(zoo.END)
    assert head == '# title\n\ntext above\n'
    assert tail == '\ntext below\n'
    assert 'old table' not in section
    assert '| [sase_r50_8xb16_in1k](configs/imagenet/sase_r50_8xb16_in1k.py)' \
        in section
    assert section == zoo.render_readme_section(str(zoo_root))
    assert (zoo_root / zoo.ZOO_DOC).read_text() == zoo.render_doc(
        str(zoo_root))
    # Now current: --check passes and writes nothing.
    assert zoo.main(['--root', str(zoo_root), '--check']) == {
        zoo.ZOO_DOC: True, 'README.md': True}
    # A metafile change makes both stale; --check exits 1.
    meta_path = zoo_root / 'configs' / 'imagenet' / 'metafile.yml'
    meta = yaml.safe_load(meta_path.read_text())
    meta['Models'][0]['Metadata']['Parameters'] += 10**6
    zoo.dump_metafile(meta, str(meta_path))
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        zoo.main(['--root', str(zoo_root), '--check'])
    assert err.value.code == 1
    assert 'stale' in capsys.readouterr().out
    assert readme.read_text() == after  # --check wrote nothing


def test_generator_without_markers_writes_only_the_doc(zoo_root, capsys):
    readme = zoo_root / 'README.md'
    readme.write_text('# no markers here\n')
    status = zoo.main(['--root', str(zoo_root)])
    assert 'README.md' not in status
    assert 'no `<!-- model-zoo:start -->`' in capsys.readouterr().out
    assert readme.read_text() == '# no markers here\n'
    assert (zoo_root / zoo.ZOO_DOC).is_file()


def test_metafiles_round_trip_through_the_writer(tmp_path):
    """--update-complexity rewrites metafiles with dump_metafile: the
    committed ones are in exactly that form (so it changes only counts)."""
    for rel, meta in zoo.load_zoo(REPO):
        out = tmp_path / 'm.yml'
        zoo.dump_metafile(meta, str(out))
        assert out.read_text() == open(osp.join(REPO, rel)).read(), rel


def test_help(capsys):
    assert '--update-complexity' in help_text(zoo, capsys)
