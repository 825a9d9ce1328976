"""DARTSLoop: the epoch loop of a DARTS search, over two dataloaders at once.

SASE (arXiv 2411.08333) searches its block with DARTS (Liu et al., ICLR
2019): the training set is split in two halves, one for the weights and one
for the architecture weights alpha, and each iteration takes one batch of
each (docs/spec.md section 3). In mmengine's idiom the loop only moves data:
it zips the train-half and search-half dataloaders (both built by the
runner, seeded, their samplers re-seeded every epoch) and hands
``dict(train=batch, search=batch)`` to the model's ``train_step``, which
does the optimisation (``DARTSSearch``). Before the first epoch it checks
the optimizers and schedulers with the search contract's one check
(``check_search_optimizers``, which the model runs too). Hooks, validation on
a held-out split, checkpoints and resuming are mmengine's
``EpochBasedTrainLoop``'s.

Beyond the paper (off by default, docs/search_options.md): ``warmup_epochs=k``
trains the weights alone for the first k epochs (NNI's DARTS warm-up): the
loop sets the model's ``freeze_alphas`` flag for those epochs, from the
epoch counter (so a search resumed mid-warm-up stays frozen), and the
model's ``train_step`` then skips the alpha step, leaving alpha and its
optimizer's state bit-identical. Every epoch it also tells the model how far
the search is (``search_progress = epoch / max_epochs``), which the
Beta-Decay schedule reads.
"""
import logging
from typing import Dict, Union

from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import DataLoader

from ..models.search.contract import check_search_optimizers
from ..models.search.guard import FIXES, SearchDiverged
from ..registry import LOOPS
from ..utils.unwrap import unwrap_model


def _set_epoch(loader: DataLoader, epoch: int) -> None:
    for sampler in (getattr(loader, 'sampler', None),
                    getattr(getattr(loader, 'batch_sampler', None),
                            'sampler', None)):
        if hasattr(sampler, 'set_epoch'):
            sampler.set_epoch(epoch)


@LOOPS.register_module()
class DARTSLoop(EpochBasedTrainLoop):
    """Epoch-based DARTS search loop.

    Args:
        runner (Runner): the runner.
        dataloader (DataLoader | dict): the train half (weights); the
            runner's ``train_dataloader``.
        search_dataloader (DataLoader | dict): the search half (alpha).
        max_epochs (int): search epochs.
        val_begin (int): first epoch that validates (if a ``val_loop`` is
            configured: a held-out split).
        val_interval (int): validation interval in epochs.
        allow_alpha_lr_schedule (bool): DARTS keeps the alpha learning rate
            constant; a ``param_scheduler`` list (rather than
            ``dict(weights=[...], alphas=[])``) would anneal it too, so by
            default an lr scheduler on ``alphas`` is an error.
        warmup_epochs (int): beyond the paper: the first ``warmup_epochs``
            epochs run weight steps only, alpha frozen (0, the paper's:
            none). An int in ``[0, max_epochs)``.

    An epoch has ``min(len(dataloader), len(search_dataloader))``
    iterations; keep the halves the same size so that iteration-based
    schedulers (which count ``len(train_dataloader)``) agree.
    """

    def __init__(self, runner, dataloader: Union[DataLoader, Dict],
                 search_dataloader: Union[DataLoader, Dict],
                 max_epochs: int, val_begin: int = 1, val_interval: int = 1,
                 allow_alpha_lr_schedule: bool = False,
                 warmup_epochs: int = 0) -> None:
        # Checked first: a bad value fails before any dataloader is built.
        if isinstance(warmup_epochs, bool) or not isinstance(
                warmup_epochs, int) or not 0 <= warmup_epochs < max_epochs:
            raise ValueError(
                f'train_cfg.warmup_epochs must be an int in [0, max_epochs='
                f'{max_epochs}) (epochs of weight steps only, alpha frozen; '
                f'0 for none), got {warmup_epochs!r}')
        super().__init__(runner, dataloader, max_epochs, val_begin,
                         val_interval)
        self.warmup_epochs = warmup_epochs
        if isinstance(search_dataloader, dict):
            diff_rank_seed = runner._randomness_cfg.get(
                'diff_rank_seed', False)
            # Another seed than the train half's: independent orders.
            seed = None if runner.seed is None else runner.seed + 1
            search_dataloader = runner.build_dataloader(
                search_dataloader, seed=seed, diff_rank_seed=diff_rank_seed)
        self.search_dataloader = search_dataloader
        n_train, n_search = len(self.dataloader), len(search_dataloader)
        if n_train != n_search:
            print_log(
                f'DARTSLoop: the train half has {n_train} batches and the '
                f'search half {n_search}; an epoch runs '
                f'{min(n_train, n_search)} iterations', logger='current',
                level=logging.WARNING)
        self.iters_per_epoch = min(n_train, n_search)
        self._max_iters = self._max_epochs * self.iters_per_epoch
        self.allow_alpha_lr_schedule = allow_alpha_lr_schedule

    def run(self):
        """Checks the set-up, then runs mmengine's epoch loop; a search
        stopped early (``stop_training``, e.g. by GenotypeHook's
        ``stop_when_decided``) validates its last epoch too."""
        self.check_set_up()
        self.runner.call_hook('before_train')
        while self._epoch < self._max_epochs and not self.stop_training:
            self.run_epoch()
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None
                    and self._epoch >= self.val_begin
                    and (self._epoch % self.val_interval == 0
                         or self._epoch == self._max_epochs
                         or self.stop_training)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train')
        return self.runner.model

    def check_set_up(self) -> None:
        """The search contract on the runner's model, optimizers and
        schedulers (raises TypeError / ValueError, see
        ``check_search_optimizers``)."""
        model = unwrap_model(self.runner.model)
        check_search_optimizers(
            model, self.runner.optim_wrapper,
            self.runner.param_schedulers, self.allow_alpha_lr_schedule)
        if self.warmup_epochs and not hasattr(model, 'freeze_alphas'):
            raise TypeError(
                f'train_cfg.warmup_epochs needs a search model with a '
                f'`freeze_alphas` flag that its train_step honours (e.g. '
                f'sase_mm.DARTSSearch); {type(model).__name__} has none')

    def run_epoch(self) -> None:
        """One epoch over both halves, zipped."""
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        _set_epoch(self.dataloader, self._epoch)
        _set_epoch(self.search_dataloader, self._epoch)
        model = unwrap_model(self.runner.model)
        if hasattr(model, 'search_progress'):
            model.search_progress = self._epoch / self._max_epochs
        if self.warmup_epochs:
            frozen = self._epoch < self.warmup_epochs
            model.freeze_alphas = frozen
            if frozen:
                print_log(f'DARTSLoop: warm-up epoch {self._epoch + 1} of '
                          f'{self.warmup_epochs}: weight steps only, alpha '
                          f'frozen', logger='current')
        for idx, (train, search) in enumerate(
                zip(self.dataloader, self.search_dataloader)):
            self.run_iter(idx, dict(train=train, search=search))
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def _diverged_message(self, err: Exception) -> str:
        """Where the search diverged and what to do, for the user."""
        hub = self.runner.message_hub
        last = hub.get_info('last_ckpt') if 'last_ckpt' in \
            hub.runtime_info else None
        return (f'the search diverged at iteration {self._iter + 1} (epoch '
                f'{self._epoch + 1}): {err}. Stopped; no genotype was '
                f'written from these values. Last good checkpoint: '
                f'{last or "none yet"}. Usual fixes: {FIXES}; then resume '
                f'with --resume, or set model.nan_policy=\'skip_step\' to '
                f'skip such steps.')

    def run_iter(self, idx, data_batch: dict) -> None:
        """One search iteration on ``dict(train=..., search=...)``."""
        self.runner.call_hook('before_train_iter', batch_idx=idx,
                              data_batch=data_batch)
        # The search model synchronises its own gradients across ranks
        # (DDP's hooks do not see torch.autograd.grad), so call it unwrapped.
        model = unwrap_model(self.runner.model)
        try:
            outputs = model.train_step(
                data_batch, optim_wrapper=self.runner.optim_wrapper)
        except SearchDiverged as err:
            raise SearchDiverged(self._diverged_message(err)) from None
        self.runner.call_hook('after_train_iter', batch_idx=idx,
                              data_batch=data_batch, outputs=outputs)
        self._iter += 1
