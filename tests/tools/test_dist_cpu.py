"""tools/dist_search.sh on a machine without CUDA (SASE, arXiv 2411.08333):
two gloo processes search the digits end to end, with the search's
synchronised BatchNorm (``model.sync_bn=True``), and both ranks end with
the same alphas, weights and BN statistics."""
import os
import os.path as osp
import subprocess
import sys

import torch
from data_utils.tool_runs import REPO

RANK_DUMP = '''
import os
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankDumpHook(Hook):
    """Saves each rank's state_dict at the end (the checkpoint is rank 0's
    only)."""
    def after_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        torch.save({k: v.detach().cpu() for k, v in
                    model.state_dict().items()},
                   os.path.join(runner.work_dir, f'rank{get_rank()}.pth'))
'''


def test_two_cpu_processes_search_the_digits(tmp_path):
    (tmp_path / 'rank_dump.py').write_text(RANK_DUMP)
    digits = osp.join(REPO, 'configs', 'search', 'sase_r8_digits.py')
    child = tmp_path / 'tiny_digits.py'
    child.write_text(
        f"_base_ = [{digits!r}]\n"
        "custom_imports = dict(imports=['sase_mm', 'rank_dump'],\n"
        "                      allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='sase_mm.GenotypeHook', plot=False),\n"
        "                dict(type='RankDumpHook')]\n"
        "train_cfg = dict(max_epochs=2, val_interval=2)\n"
        "train_dataloader = dict(batch_size=16, num_batch_per_epoch=2)\n"
        "val_dataloader = dict(batch_size=16, num_batch_per_epoch=1)\n")
    work = tmp_path / 'work'
    env = dict(os.environ, PYTHON=sys.executable, PORT='29731',
               PYTHONPATH=f'{tmp_path}:{os.environ.get("PYTHONPATH", "")}',
               CUDA_VISIBLE_DEVICES='')
    cmd = ['bash', osp.join(REPO, 'tools', 'dist_search.sh'), str(child), '2',
           '--work-dir', str(work), '--cfg-options',
           'train_cfg.search_dataloader.batch_size=16',
           'train_cfg.search_dataloader.num_batch_per_epoch=2',
           'model.sync_bn=True']
    res = subprocess.run(cmd, capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-3000:])
    ranks = [torch.load(work / f'rank{r}.pth') for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys() and 'alphas' in ranks[0]
    for key in ranks[0]:  # parameters and (global-batch) BN statistics
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    assert any('running_mean' in k for k in ranks[0])
    assert (work / 'genotype.json').is_file()
    assert 'Searched genotype' in res.stdout + res.stderr
