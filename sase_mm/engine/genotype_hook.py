"""GenotypeHook: records the architecture of a SASE search every epoch.

SASE (arXiv 2411.08333): the searched block is the argmax of each row of the
shared (6, 7) alpha (docs/spec.md section 3). The hook derives nothing
itself: it asks the search model (unwrapped; ``is_search_model``) for
``genotype()``, ``mix()`` (softmax(alpha)) and ``arch_alphas``. Every
``interval`` epochs it logs the genotype and softmax(alpha) (logger, and
every visualizer backend through ``add_scalars``) and writes, atomically, in
``out_dir`` (default: the work dir):

* ``genotype.json``: the genotype (readable by ``Genotype.load``) with the
  epoch, alpha and softmax(alpha);
* ``genotype.py``: a config fragment defining ``genotype = [...]`` (its
  only statement, so ``Genotype.load`` parses it without running it), for a
  downstream config: ``_base_ = [TRAIN_CONFIG, '<work_dir>/genotype.py']``
  and ``attn_cfg=dict(type='sase_mm.SASE', genotype={{_base_.genotype}})``;
  with ``train_config`` set, its header spells these two lines for that
  training config;
* ``alphas_heatmap.png``: softmax(alpha), edges x operations;
* ``alphas_history.png`` / ``alphas_history.json``: each edge's weights over
  the epochs (kept in the checkpoints, so a resumed search continues them);
  the two PNGs every ``plot_interval`` records and at the end (matplotlib
  takes about a second for both: a search of many short epochs plots less
  often);
* ``curves.png``: the loss and held-out accuracy over the search (at the
  end, from mmengine's scalar log).

At the end of the search it logs the final genotype and these paths.

Beyond the paper (off by default, docs/search_options.md):
``stop_when_decided=N`` ends the search early, as mmengine's
``EarlyStoppingHook`` does (``train_loop.stop_training``), once every edge
has been decided (margin >= ``margin_threshold``) with the same genotype at
the end of N consecutive epochs; ``DARTSLoop`` then validates the last
epoch.
"""
import json
import os
from typing import List, Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from ..models.sase import EDGES, Genotype
from ..models.search.contract import is_search_model
from ..models.search.guard import FIXES, SearchDiverged, is_finite
from ..registry import HOOKS
from ..utils.atomic import atomic_write_text
from ..utils.unwrap import unwrap_model
from ..visualization.alpha_plots import (decision_summary, edge_margins,
                                         plot_alpha_heatmap,
                                         plot_alpha_history)
from ..visualization.curves import plot_run_curves

FILES = dict(json='genotype.json', config='genotype.py',
             heatmap='alphas_heatmap.png', history='alphas_history.png',
             history_json='alphas_history.json', curves='curves.png')


def alpha_table(probs: torch.Tensor) -> str:
    """softmax(alpha) as a text table, one line per edge, argmax marked."""
    lines = []
    for i, edge in enumerate(EDGES):
        best = int(probs[i].argmax())
        cells = ' '.join(f'{"*" if j == best else " "}{op}={float(p):.3f}'
                         for j, (op, p) in enumerate(
                             zip(edge.op_set.names, probs[i])))
        lines.append(f'  {edge.name:<22} {cells}')
    return '\n'.join(lines)


@HOOKS.register_module()
class GenotypeHook(Hook):
    """Logs and saves the searched genotype every ``interval`` epochs.

    Args:
        interval (int): epochs between records (the last epoch is always
            recorded).
        out_dir (str, optional): where the files go (default: work dir).
        plot (bool): write the two PNGs (matplotlib).
        plot_interval (int): plot every this many epochs (and at the end of
            the search); 1: at every record.
        margin_threshold (float): an edge whose best weight leads the second
            best by less than this is "not yet decided": flagged on the
            heatmap and in the final summary, which then suggests more
            epochs (0.02).
        train_config (str, optional): the training config the searched
            block is meant for (e.g.
            ``'sase_mm::faster_rcnn/sase_r50_fpn_1x_coco.py'``); genotype.py's
            header then gives the two lines of a config that trains it.
        attn_key (str): where that config's attention config is
            (``'model.backbone.attn_cfg'``).
        stop_when_decided (int): beyond the paper: stop the search once
            every edge has been decided, with the same genotype, at the end
            of this many consecutive epochs (needs ``interval=1``); 0 (the
            paper's): run every epoch.
    """
    priority = 'LOW'

    def __init__(self, interval: int = 1, out_dir: Optional[str] = None,
                 plot: bool = True, margin_threshold: float = 0.02,
                 train_config: Optional[str] = None,
                 attn_key: str = 'model.backbone.attn_cfg',
                 stop_when_decided: int = 0, plot_interval: int = 1):
        if isinstance(plot_interval, bool) or not isinstance(
                plot_interval, int) or plot_interval < 1:
            raise ValueError(
                f'GenotypeHook plot_interval must be an int >= 1 (epochs '
                f'between the PNGs; 1: every record), got {plot_interval!r}')
        if isinstance(stop_when_decided, bool) or not isinstance(
                stop_when_decided, int) or stop_when_decided < 0:
            raise ValueError(
                f'GenotypeHook stop_when_decided must be an int >= 0 '
                f'(epochs every edge must stay decided; 0: off), got '
                f'{stop_when_decided!r}')
        if stop_when_decided and interval != 1:
            raise ValueError(
                f'GenotypeHook stop_when_decided counts epochs, so it needs '
                f'interval=1 (a record every epoch), got interval='
                f'{interval!r}')
        self.stop_when_decided = stop_when_decided
        self.interval = interval
        self.out_dir = out_dir
        self.plot = plot
        self.plot_interval = plot_interval
        self._plotted = None  # the epoch the PNGs show
        self.margin_threshold = float(margin_threshold)
        self.train_config = train_config
        self.attn_key = attn_key
        self.history: List[list] = []  # [epoch, softmax(alpha) as lists]

    @staticmethod
    def _search_model(runner):
        model = unwrap_model(runner.model)
        if not is_search_model(model):
            raise TypeError(f'GenotypeHook needs a search model that reports '
                            f'its genotype (e.g. sase_mm.DARTSSearch), got '
                            f'{type(model).__name__}')
        return model

    def paths(self, runner) -> dict:
        out = self.out_dir or runner.work_dir
        return {k: os.path.join(out, v) for k, v in FILES.items()}

    def after_train_epoch(self, runner) -> None:
        epoch = runner.epoch + 1  # the epoch that just ended
        if not (self.every_n_epochs(runner, self.interval)
                or self.is_last_train_epoch(runner)):
            return
        self.record(runner, epoch)
        if self.stop_when_decided and \
                self.decided_streak() >= self.stop_when_decided:
            runner.train_loop.stop_training = True
            runner.logger.info(
                f'GenotypeHook: every edge has been decided (margin >= '
                f'{self.margin_threshold:g}) with the same genotype for '
                f'{self.stop_when_decided} epochs: stopping the search '
                f'after epoch {epoch} (stop_when_decided)')

    def decided_streak(self) -> int:
        """The number of consecutive recorded epochs, up to the last, at
        whose end every edge was decided with the last one's genotype."""
        streak, last = 0, None
        for _, probs in sorted(self.history, reverse=True):
            probs = torch.tensor(probs)
            if (edge_margins(probs) < self.margin_threshold).any():
                break
            choice = probs.argmax(dim=1).tolist()
            if last is not None and choice != last:
                break
            last = choice
            streak += 1
        return streak

    def record(self, runner, epoch: int) -> Genotype:
        """Logs, plots and writes the current genotype (see module doc)."""
        model = self._search_model(runner)
        genotype = model.genotype()
        with torch.no_grad():
            alphas = model.arch_alphas.detach().float().cpu()
            probs = model.mix().detach().float().cpu()
        if not is_finite(alphas):
            raise SearchDiverged(
                f'alpha is not finite at the end of epoch {epoch}; no '
                f'genotype is written from it. Usual fixes: {FIXES}')
        self.history = [h for h in self.history if h[0] != epoch]
        self.history.append([epoch, probs.tolist()])
        runner.logger.info(f'Epoch {epoch} genotype: {genotype}\n'
                           f'softmax(alpha):\n{alpha_table(probs)}')
        runner.visualizer.add_scalars(
            {f'alpha/{e.name}/{op}': float(probs[i, j])
             for i, e in enumerate(EDGES)
             for j, op in enumerate(e.op_set.names)}, step=epoch)
        if is_main_process():
            self._write(runner, epoch, genotype, alphas, probs)
        return genotype

    def _write(self, runner, epoch, genotype, alphas, probs) -> None:
        paths = self.paths(runner)
        os.makedirs(os.path.dirname(paths['json']), exist_ok=True)
        atomic_write_text(paths['json'], json.dumps(dict(
            genotype=genotype.to_dict(), reference=genotype.to_pairs(),
            epoch=epoch, alphas=alphas.tolist(),
            softmax_alphas=probs.tolist()), indent=2))
        atomic_write_text(paths['config'], (
            f'# SASE searched genotype, epoch {epoch} '
            f'({runner.experiment_name}).\n'
            + self.usage(paths['config']) + genotype.to_config()))
        history = sorted(self.history)
        atomic_write_text(paths['history_json'], json.dumps(
            dict(edges=[e.name for e in EDGES],
                 ops=[list(e.op_set.names) for e in EDGES],
                 epochs=[h[0] for h in history],
                 softmax_alphas=[h[1] for h in history])))
        if self.plot and epoch % self.plot_interval == 0:
            self._plot(paths, epoch, genotype, probs)

    def _plot(self, paths, epoch, genotype, probs) -> None:
        history = sorted(self.history)
        plot_alpha_heatmap(probs, paths['heatmap'],
                           f'softmax(alpha), epoch {epoch}\n{genotype}',
                           margin_threshold=self.margin_threshold)
        plot_alpha_history([h[0] for h in history],
                           [h[1] for h in history], paths['history'])
        self._plotted = epoch

    def usage(self, path: str) -> str:
        """genotype.py's header: how a training config takes it."""
        if self.train_config is None:
            return (f'# Use: _base_ = [\'{path}\'] and attn_cfg=dict('
                    f'type=\'sase_mm.SASE\', genotype={{{{_base_.genotype}}}})'
                    f'\n')
        keys = self.attn_key.split('.')
        value = "dict(type='sase_mm.SASE', genotype={{_base_.genotype}})"
        for key in reversed(keys[1:]):  # model = dict(backbone=dict(...))
            value = f'dict({key}={value})'
        line = f'{keys[0]} = {value}'
        return (f'# Train with it: a config of these two lines (the '
                f'searched block in {self.train_config}):\n'
                f"#   _base_ = ['{self.train_config}', '{path}']\n"
                f'#   {line}\n')

    def undecided(self, runner) -> List[tuple]:
        """(edge name, margin) of each edge whose margin is below
        ``margin_threshold``."""
        with torch.no_grad():
            probs = self._search_model(runner).mix().detach().float().cpu()
        return [(e.name, float(m)) for e, m in zip(EDGES, edge_margins(probs))
                if m < self.margin_threshold]

    def after_train(self, runner) -> None:
        genotype = self._search_model(runner).genotype()
        paths = self.paths(runner)
        if self.plot and is_main_process():
            last = max(self.history) if self.history else None
            if last is not None and self._plotted != last[0]:
                # The last record fell between plot_interval epochs.
                self._plot(paths, last[0], genotype,
                           torch.tensor(last[1]))
            # The loss / accuracy curves, after the last validation.
            plot_run_curves(runner, paths['curves'])
        files = '\n'.join(f'  {k}: {v}' for k, v in paths.items()
                          if os.path.exists(v))
        undecided = self.undecided(runner)
        runner.logger.info(
            f'Search finished. Genotype: {genotype}\n'
            f'  reference spelling: {genotype.to_pairs()}\n'
            f'{decision_summary(undecided, self.margin_threshold)}'
            f'\nFiles:\n{files}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})['alpha_history'] = self.history

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self.history = list(checkpoint.get('meta', {}).get(
            'alpha_history', []))
