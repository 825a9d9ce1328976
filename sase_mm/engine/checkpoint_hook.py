"""SafeCheckpointHook: mmengine's CheckpointHook with writes that lose nothing.

A SASE search (arXiv 2411.08333) or training run killed at any moment, or
stopped by a full disk, must resume from its last good checkpoint. mmengine
0.10.7's ``CheckpointHook`` deletes the checkpoint beyond ``max_keep_ckpts``
*before* writing the new one, writes the new one in place, and then points
``last_checkpoint`` at it. A kill during the write leaves a truncated file
under the final name and, with ``max_keep_ckpts=1``, nothing else.

This subclass keeps every option of mmengine's hook and changes the order:

1. the checkpoint is written to a temporary file in the same folder,
   flushed to disk and renamed onto its name (``os.replace``), and its
   SHA-256 is written beside it (``epoch_3.pth.sha256``);
2. only then is ``last_checkpoint`` updated (atomically);
3. only then are the checkpoints beyond ``max_keep_ckpts`` deleted.

So at every moment ``last_checkpoint`` names a whole checkpoint. The loader
(``sase_mm.utils.load_checkpoint``) checks the hash on every load, and the
tools' ``--resume`` takes the newest checkpoint that verifies
(``utils/checkpoint_files.py``). Use it as ``default_hooks = dict(
checkpoint=dict(type='sase_mm.SafeCheckpointHook', interval=1))``.
"""
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from ..registry import HOOKS
from ..utils.atomic import atomic_write_text
from ..utils.checkpoint_files import commit_checkpoint, remove_checkpoint


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic, hashed writes and a safe order.

    Args: every argument of mmengine's ``CheckpointHook``. Local output
    folders only (``out_dir`` on another file backend is refused).
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not self.file_backend.name == 'LocalBackend':
            raise ValueError(
                f'SafeCheckpointHook writes local files atomically; out_dir '
                f'{self.out_dir!r} is on {self.file_backend.name}. Use '
                f"type='CheckpointHook' for remote storage")

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        filename = self.filename_tmpl.format(step)
        path = self.file_backend.join_path(self.out_dir, filename)
        self.last_ckpt = path
        runner.message_hub.update_info('last_ckpt', path)
        drop = []  # deleted only once the new checkpoint is in place
        if self.max_keep_ckpts > 0 and not (
                self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            # keep_ckpt_ids has maxlen max_keep_ckpts: take the oldest out.
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                drop.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        self._write(runner, filename, path, meta)
        if not is_main_process():
            return
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), path)
        for old in drop:
            remove_checkpoint(self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(old)))

    def _write(self, runner, filename: str, path: str, meta) -> None:
        """``runner.save_checkpoint`` (which builds the dict and calls the
        ``before_save_checkpoint`` hooks) into a temporary name in the same
        folder; then flushed, hashed and renamed onto ``path``."""
        tmp_name = f'.{filename}.{os.getpid()}.tmp'
        tmp = self.file_backend.join_path(self.out_dir, tmp_name)
        try:
            runner.save_checkpoint(
                self.out_dir, tmp_name, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args,
                **self.args)
            if is_main_process():
                commit_checkpoint(tmp, path)
        finally:
            if os.path.lexists(tmp):
                os.remove(tmp)
