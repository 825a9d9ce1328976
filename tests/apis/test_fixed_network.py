"""A search config's fixed network as a training run (SASE, arXiv
2411.08333: the searched block judged by training the network it was
searched on): the checks of the config, the data of both halves, the weight
optimizer and its schedulers rescaled, one run's config."""
import copy

import pytest
from mmengine.config import Config

from sase_mm.apis.fixed_network import (FixedNetworkError, fixed_network,
                                        recipe, recipe_hash,
                                        rescale_schedulers, run_config)
from sase_mm.registry import DATASETS

DIGITS = 'configs/search/sase_r8_digits.py'


@pytest.fixture(scope='module')
def digits():
    from data_utils.tool_runs import config_path
    return Config.fromfile(config_path('search/sase_r8_digits.py'))


def test_recipe_of_the_digits_search(digits):
    rec = recipe(digits, 3, DIGITS)
    assert rec['network']['type'] == 'sase_mm.CifarResNet'
    assert 'attn_cfg' not in rec['network']
    assert rec['epochs'] == 3
    data = rec['train_dataloader']['dataset']
    assert data['type'] == 'ConcatDataset'
    assert [d['split'] for d in data['datasets']] == ['train', 'search']
    assert rec['train_dataloader']['batch_size'] == \
        digits.train_dataloader.batch_size
    assert rec['val_dataloader']['dataset']['split'] == 'val'
    assert rec['optim_wrapper']['optimizer']['lr'] == \
        digits.optim_wrapper.weights.optimizer.lr
    assert 'alphas' not in str(rec['optim_wrapper'])
    (cosine, ) = rec['param_scheduler']
    assert cosine['type'] == 'CosineAnnealingLR'
    assert (cosine['T_max'], cosine['end']) == (3, 3)
    # The config's own epochs without --epochs.
    assert recipe(digits)['epochs'] == digits.train_cfg.max_epochs
    # Both halves, built: as many samples as the two together.
    both = DATASETS.build(copy.deepcopy(dict(data, datasets=[
        dict(d, size=8) for d in data['datasets']])))
    halves = [DATASETS.build(dict(d, size=8)) for d in data['datasets']]
    assert len(both) == sum(len(h) for h in halves)


def test_recipe_hash_tells_recipes_apart(digits):
    a = recipe_hash(recipe(digits, 3))
    assert a == recipe_hash(recipe(digits, 3))
    assert a != recipe_hash(recipe(digits, 2))
    other = copy.deepcopy(digits)
    other.merge_from_dict({'optim_wrapper.weights.optimizer.lr': 0.1})
    assert a != recipe_hash(recipe(other, 3))
    # What only logs differently is the same recipe.
    other = copy.deepcopy(digits)
    other.merge_from_dict({'log_level': 'WARNING',
                           'default_hooks.logger.interval': 1})
    assert a == recipe_hash(recipe(other, 3))


def test_run_config(digits, tmp_path):
    rec = recipe(digits, 2)
    attn = dict(type='sase_mm.SE')
    cfg = run_config(digits, rec, attn, 4, str(tmp_path / 'run'), 'r')
    assert cfg.model.type == 'sase_mm.LogitsClassifier'
    assert cfg.model.network.attn_cfg == attn
    assert cfg.model.network.depth == digits.model.supernet.depth
    assert cfg.randomness.seed == 4
    assert cfg.default_hooks.checkpoint is None
    assert cfg.default_hooks.logger.interval == \
        digits.default_hooks.logger.interval
    assert cfg.custom_hooks == []  # no GenotypeHook: nothing is searched
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop'
    assert cfg.train_cfg.max_epochs == 2
    assert cfg.val_cfg == {}
    assert cfg.val_evaluator.type == digits.val_evaluator.type
    assert list(cfg.val_evaluator.topk) == list(digits.val_evaluator.topk)
    assert (cfg.work_dir, cfg.experiment_name) == (str(tmp_path / 'run'),
                                                   'r')
    assert run_config(digits, rec, None, 0, 'w', 'n').model.network[
        'attn_cfg'] is None


@pytest.mark.parametrize('schedulers,want', [
    ([dict(type='CosineAnnealingLR', T_max=50, eta_min=1e-4, begin=0,
           end=50)],
     [dict(type='CosineAnnealingLR', T_max=5, eta_min=1e-4, begin=0,
           end=5)]),
    ([dict(type='MultiStepLR', milestones=[20, 40], begin=10)],
     [dict(type='MultiStepLR', milestones=[2, 4], begin=1)]),
    # mmengine's INF end ("until training ends") stays.
    ([dict(type='ConstantLR', factor=0.5, end=1 << 62)],
     [dict(type='ConstantLR', factor=0.5, end=1 << 62)]),
    # Nothing rounds to 0 epochs.
    ([dict(type='StepLR', step_size=2, begin=0, end=4)],
     [dict(type='StepLR', step_size=1, begin=0, end=1)]),
    (None, []),
])
def test_rescale_schedulers(schedulers, want):
    assert rescale_schedulers(schedulers, 50, 5) == want


def _cfg(**model):
    base = dict(
        model=dict(type='sase_mm.DARTSSearch', supernet=dict(
            type='sase_mm.CifarResNet', depth=8, num_classes=10,
            attn_cfg=dict(type='sase_mm.SASESearch'))),
        train_dataloader=dict(dataset=dict(type='sase_mm.DigitsSearch')),
        train_cfg=dict(max_epochs=2, search_dataloader=dict(
            dataset=dict(type='sase_mm.DigitsSearch', split='search'))),
        val_dataloader=dict(dataset=dict(type='sase_mm.DigitsSearch',
                                         split='val')),
        val_evaluator=dict(type='sase_mm.TopKAccuracy'),
        optim_wrapper=dict(weights=dict(optimizer=dict(type='SGD',
                                                       lr=0.1))))
    cfg = Config(base)
    cfg.merge_from_dict(model)
    return cfg


def test_a_minimal_search_config_passes():
    assert fixed_network(_cfg()).type == 'sase_mm.CifarResNet'
    assert recipe(_cfg())['param_scheduler'] == []


@pytest.mark.parametrize('change,why', [
    ({'model.type': 'ImageClassifier'}, "model is 'ImageClassifier', not "
     'a search model'),
    ({'model.supernet.type': 'sase_mm.DARTSSearch'}, 'an mm model'),
    ({'model.supernet.type': 'NoSuchNet'}, "'NoSuchNet' is not registered"),
    ({'model.supernet.num_classes': 0}, 'num_classes=0: a backbone'),
    ({'val_dataloader': None}, 'no val_dataloader'),
    ({'val_evaluator': None}, 'no val_evaluator'),
    ({'train_cfg.search_dataloader': None}, 'train_cfg.search_dataloader'),
    ({'optim_wrapper': dict(_delete_=True, optimizer=dict(type='SGD'))},
     r'no weight optimizer \(optim_wrapper.weights\)'),
])
def test_configs_without_a_fixed_network(change, why):
    with pytest.raises(FixedNetworkError, match=why) as err:
        recipe(_cfg(**change), config='x.py')
    assert 'Expected a search config whose model is a' in str(err.value)


def test_no_attention_slot():
    cfg = _cfg()
    del cfg.model.supernet['attn_cfg']
    with pytest.raises(FixedNetworkError, match='has no attn_cfg'):
        fixed_network(cfg, 'x.py')


def test_a_seed_gives_every_candidate_the_same_batches(digits, tmp_path):
    # What pairing by seed rests on: the data order depends on the seed
    # alone, not on the attention's parameters.
    from sase_mm.apis.tool_args import build_runner
    cfg = copy.deepcopy(digits)
    cfg.merge_from_dict({'model.supernet.depth': 8,
                         'model.supernet.base_channels': 8,
                         'train_dataloader.dataset.size': 8,
                         'train_cfg.search_dataloader.dataset.size': 8})
    rec = recipe(cfg, 1)

    def first_labels(attn, seed):
        runner = build_runner(run_config(
            cfg, rec, attn, seed, str(tmp_path / f'{attn}{seed}'),
            f'order_{id(attn)}_{seed}'))
        return next(iter(runner.train_dataloader))['data_samples'].tolist()

    se = first_labels(dict(type='sase_mm.SE'), 3)
    assert se == first_labels(None, 3)
    assert se != first_labels(dict(type='sase_mm.SE'), 4)
