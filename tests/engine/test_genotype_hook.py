"""GenotypeHook asks the search model (SASE, arXiv 2411.08333; docs/spec.md
section 3): it records ``model.genotype()`` and ``model.mix()`` rather than
re-deriving them from alpha, and refuses a model that is not a search
model with a clear error."""
import json
import types

import pytest
import torch

from sase_mm.engine import GenotypeHook
from sase_mm.models.sase import EDGES, Genotype
from sase_mm.registry import MODELS

SUPERNET = dict(type='sase_mm.CifarResNet', depth=8, base_channels=8,
                input_size=8, attn_cfg=dict(type='sase_mm.SASESearch'))


def _runner(model, work_dir):
    logged = []
    return types.SimpleNamespace(
        model=model, work_dir=str(work_dir), experiment_name='hook_test',
        logger=types.SimpleNamespace(info=logged.append),
        visualizer=types.SimpleNamespace(add_scalars=lambda *a, **k: None),
        logged=logged)


def _last_ops():
    return Genotype(e.op_set.names[-1] for e in EDGES)


@pytest.mark.parametrize('patch', ['genotype', 'mix'])
def test_hook_records_what_the_model_reports(patch, tmp_path):
    torch.manual_seed(0)
    model = MODELS.build(dict(type='sase_mm.DARTSSearch', supernet=SUPERNET))
    reported = dict(genotype=model.genotype(), mix=model.mix().detach())
    if patch == 'genotype':  # not the argmax of alpha
        reported['genotype'] = _last_ops()
        assert reported['genotype'] != Genotype.from_alphas(model.alphas)
        model.genotype = lambda: reported['genotype']
    else:  # not softmax(alpha)
        reported['mix'] = torch.full((6, 7), 1 / 7)
        model.mix = lambda: reported['mix']
    runner = _runner(model, tmp_path)
    hook = GenotypeHook(plot=False)
    assert hook.record(runner, epoch=1) == reported['genotype']
    saved = json.load(open(hook.paths(runner)['json']))
    assert Genotype.load(hook.paths(runner)['json']) == reported['genotype']
    assert torch.allclose(torch.tensor(saved['softmax_alphas']),
                          reported['mix'])
    assert torch.equal(torch.tensor(saved['alphas']), model.alphas.detach())
    assert f'Epoch 1 genotype: {reported["genotype"]}' in runner.logged[0]
    hook.after_train(runner)
    assert f'Genotype: {reported["genotype"]}' in runner.logged[-1]


@pytest.mark.parametrize('model', [torch.nn.Linear(2, 2),
                                   MODELS.build(SUPERNET)],
                         ids=['linear', 'supernet_alone'])
def test_hook_refuses_a_model_that_is_not_a_search_model(model, tmp_path):
    with pytest.raises(TypeError, match='GenotypeHook needs a search model'):
        GenotypeHook(plot=False).record(_runner(model, tmp_path), epoch=1)


def test_plot_interval_plots_every_n_epochs_and_the_last(monkeypatch,
                                                         tmp_path):
    from sase_mm.engine import genotype_hook as module
    plotted = []
    monkeypatch.setattr(module, 'plot_alpha_heatmap',
                        lambda probs, path, title, **k: plotted.append(
                            ('heatmap', title.split('\n')[0])))
    monkeypatch.setattr(module, 'plot_alpha_history',
                        lambda epochs, probs, path: plotted.append(
                            ('history', epochs[-1])))
    monkeypatch.setattr(module, 'plot_run_curves', lambda runner, path: None)
    torch.manual_seed(0)
    model = MODELS.build(dict(type='sase_mm.DARTSSearch', supernet=SUPERNET))
    runner = _runner(model, tmp_path)
    hook = GenotypeHook(plot_interval=3)
    for epoch in range(1, 6):
        hook.record(runner, epoch)
    assert plotted == [('heatmap', 'softmax(alpha), epoch 3'),
                       ('history', 3)]
    # The JSON files are written at every record all the same.
    history = json.load(open(hook.paths(runner)['history_json']))
    assert history['epochs'] == [1, 2, 3, 4, 5]
    hook.after_train(runner)  # epoch 5 fell between intervals: plotted now
    assert plotted[2:] == [('heatmap', 'softmax(alpha), epoch 5'),
                           ('history', 5)]


@pytest.mark.parametrize('bad', [0, -1, 1.5, True, '2'])
def test_plot_interval_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match='plot_interval must be an int >= 1'):
        GenotypeHook(plot_interval=bad)
