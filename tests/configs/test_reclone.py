"""``_base_ = 'sase_mm::...'`` needs nothing generated (SASE, arXiv
2411.08333, downstream configs): a checkout copied afresh, as a new clone or
``git clean -xfd`` leaves it, resolves its own configs."""
import os
import shutil
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _fresh_copy(dst: str) -> None:
    """The files git tracks, and the untracked ones it does not ignore, as
    they are in the working tree (symlinks kept): what a clone holds."""
    files = subprocess.run(
        ['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=REPO,
        capture_output=True, check=True).stdout.decode().split('\0')
    for rel in filter(None, files):
        src = os.path.join(REPO, rel)
        if not os.path.lexists(src):
            continue  # deleted in the working tree
        out = os.path.join(dst, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), out)
        elif os.path.isfile(src):
            shutil.copy2(src, out)


def test_fresh_checkout_resolves_its_configs(tmp_path):
    clone = tmp_path / 'clone'
    _fresh_copy(str(clone))
    assert not (clone / 'sase_mm' / '.mim' / 'configs' / 'faster_rcnn'
                ).is_symlink()  # the link is the folder above, committed
    project = tmp_path / 'project'
    project.mkdir()
    (project / 'child.py').write_text(
        "_base_ = 'sase_mm::faster_rcnn/sase_r50_fpn_1x_coco.py'\n"
        "model = dict(roi_head=dict(bbox_head=dict(num_classes=3)))\n")
    script = textwrap.dedent(f'''
        import json, os
        import sase_mm
        from mmengine.config import Config
        cfg = Config.fromfile({str(project / 'child.py')!r})
        print(json.dumps([sase_mm.__file__, cfg.model.backbone.type,
                          cfg.model.roi_head.bbox_head.num_classes]))
    ''')
    env = dict(os.environ, PYTHONPATH=str(clone))
    res = subprocess.run([sys.executable, '-c', script], capture_output=True,
                         text=True, cwd=str(project), env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    import json
    path, backbone, classes = json.loads(res.stdout.strip().splitlines()[-1])
    assert path.startswith(str(clone))  # the copy, not the installed checkout
    assert backbone == 'sase_mm.SASEResNet' and classes == 3
