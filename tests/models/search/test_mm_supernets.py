"""The DARTS search of SASE (arXiv 2411.08333; docs/spec.md section 3)
around OpenMMLab models: an mmpretrain ImageClassifier (SASEResNet with
SASESearch) and an mmdet Faster / Mask R-CNN (mmdet ResNet with the
SASESearch plug-in). The same properties as the CIFAR supernet's tests:
one alpha owner, pure architect functions, the weight step unaffected by
the alpha step, the first-order gradient is that of the model's own summed
losses, determinism, and clear errors for models that cannot be searched.
"""
import copy

import pytest
import torch
from tiny_supernets import (KINDS, build_kind, kind_batches, make_optim,
                            mmdet_supernet, mmpretrain_supernet, raw_batch)

from sase_mm.models.sase.alphas import init_alphas
from sase_mm.models.sase.mixing import bound_mix, mixing
from sase_mm.models.search import architect
from sase_mm.registry import MODELS

MM_KINDS = KINDS[1:]  # ('mmpretrain', 'mmdet'); 'cifar': the other files


def _blocks(model):
    return [m for m in model.modules() if type(m).__name__ == 'SASESearch']


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize('kind,n_blocks', [('mmpretrain', 4), ('mmdet', 16)])
def test_one_alpha_owner_and_the_supernets_own_keys(kind, n_blocks):
    model = build_kind(kind)
    assert model.is_mm_model
    assert [k for k in model.state_dict() if 'alpha' in k] == ['alphas']
    blocks = _blocks(model)
    assert len(blocks) == n_blocks
    assert all(b.arch_alphas is model.alphas for b in blocks)
    assert not any(p is model.alphas for p in model.weight_parameters())
    # The batches go through the model's own preprocessor.
    assert model.data_preprocessor is model.supernet.data_preprocessor
    # The supernet's keys are those of the model built on its own, less
    # the alphas it holds there: one owned by the SASEResNet backbone, or
    # one per plug-in block of the mmdet ResNet until bound.
    cfg = mmpretrain_supernet() if kind == 'mmpretrain' else \
        mmdet_supernet()
    alone = MODELS.build(cfg).state_dict()
    owned = {k for k in alone if k.endswith('alphas')}
    assert len(owned) == (1 if kind == 'mmpretrain' else n_blocks)
    assert set(model.supernet.state_dict()) == set(alone) - owned


def test_sase_resnet_backbone_of_a_detector_joins_the_search_alpha():
    model = MODELS.build(dict(type='sase_mm.DARTSSearch',
                              supernet=mmdet_supernet(plugin=False)))
    assert [k for k in model.state_dict() if 'alpha' in k] == ['alphas']
    assert len(_blocks(model)) == 16
    assert all(b.arch_alphas is model.alphas for b in _blocks(model))


def test_mixing_binds_by_alpha_and_nests():
    a, b = init_alphas(), init_alphas()
    m1, m2 = torch.rand(6, 7), torch.rand(6, 7)
    assert bound_mix(a) is None
    with mixing(a, m1):
        assert bound_mix(a) is m1 and bound_mix(b) is None
        with mixing(a, m2):
            assert bound_mix(a) is m2
        assert bound_mix(a) is m1
    assert bound_mix(a) is None
    with pytest.raises(ValueError, match='shape of alpha'):
        with mixing(a, torch.rand(6, 6)):
            pass


@pytest.mark.parametrize('kind', MM_KINDS)
def test_the_given_mix_reaches_every_block(kind):
    """batch_loss uses the mix it is given, not softmax(alpha): a one-hot
    mix and the uniform one give other losses, and the gradient of the loss
    in the mix reaches every edge."""
    model = build_kind(kind)
    model.eval()  # BN on running statistics: no batch-statistics noise
    batch = kind_batches(kind, model)['train']
    mix = torch.full((6, 7), 1 / 7, requires_grad=True)
    loss = model.batch_loss(batch, mix)
    (grad, ) = torch.autograd.grad(loss, [mix])
    assert (grad.abs().sum(dim=1) > 0).all()
    one_hot = torch.eye(7)[:6]
    assert not torch.isclose(model.batch_loss(batch, one_hot).detach(),
                             loss.detach())
    # Outside the pass the blocks fall back to softmax(alpha).
    assert bound_mix(model.alphas) is None


def _reference_loss(model, batch, mix):
    """The model's own loss(inputs, data_samples), summed over the keys
    containing 'loss' (mmengine's parse_losses, restated)."""
    with mixing(model.alphas, mix), torch.random.fork_rng():
        torch.manual_seed(batch['pass_seed'])
        losses = model.supernet.loss(batch['inputs'], batch['data_samples'])
    total = 0
    for key, value in losses.items():
        if 'loss' in key:
            total = total + (sum(v.mean() for v in value)
                             if isinstance(value, list) else value.mean())
    return total, set(losses)


@pytest.mark.parametrize('kind', MM_KINDS)
def test_first_order_is_grad_of_the_models_summed_losses(kind):
    model = build_kind(kind, order=1)
    model.train()
    batches = kind_batches(kind, model)
    optim = make_optim(model)
    grad, loss_s = model.alpha_gradient(batches['train'], batches['search'],
                                        optim['weights'].optimizer)
    buffers = architect.scratch_buffers(model)
    ref, keys = _reference_loss(model, batches['search'], model.mix())
    for name, buf in model.supernet.named_buffers():  # restore BN stats
        buf.data.copy_(buffers[name])
    (expected, ) = torch.autograd.grad(ref, [model.alphas])
    assert torch.allclose(loss_s, ref.detach(), atol=1e-5)
    assert torch.allclose(grad, expected, atol=1e-6, rtol=1e-4)
    if kind == 'mmdet':  # the RPN and the ROI losses both count
        assert {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls',
                'loss_bbox'} <= keys


def test_a_detectors_sampling_is_the_same_in_every_pass_of_an_iteration():
    """Proposal sampling is random: under the batch's pass seed two passes
    agree bit for bit (so the finite difference sees no sampling noise),
    another seed samples otherwise."""
    model = build_kind('mmdet')
    model.eval()
    batch = kind_batches('mmdet', model)['train']
    mix = model.mix().detach()
    first = model.batch_loss(batch, mix)
    assert torch.equal(first, model.batch_loss(batch, mix))
    other = dict(batch, pass_seed=batch['pass_seed'] + 7)
    assert not torch.equal(first, model.batch_loss(other, mix))


CALLS = {
    'first_order_gradient': lambda m, opt, b:
        architect.first_order_gradient(m, b['search']),
    'second_order_gradient': lambda m, opt, b:
        architect.second_order_gradient(m, b['train'], b['search'], opt),
}


@pytest.mark.parametrize('kind', MM_KINDS)
@pytest.mark.parametrize('name', sorted(CALLS))
def test_architect_is_pure_on_mm_models(kind, name):
    """Parameters, BN statistics, momentum and .grad bit-identical after
    the alpha gradient (the second order covers the virtual step and the
    Hessian-vector product)."""
    model = build_kind(kind)
    model.train()
    optim = make_optim(model, lr=0.01)
    model.weight_step(kind_batches(kind, model, seeds=(3, 4))['train'],
                      optim['weights'])
    opt = optim['weights'].optimizer
    before = _state(model)
    momentum = {id(p): s['momentum_buffer'].clone()
                for p, s in opt.state.items()}
    grad, _ = CALLS[name](model, opt, kind_batches(kind, model))
    assert grad.shape == (6, 7) and torch.isfinite(grad).all()
    assert grad.abs().sum() > 0
    after = _state(model)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert all(torch.equal(s['momentum_buffer'], momentum[id(p)])
               for p, s in opt.state.items())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize('kind,order', [('mmpretrain', 1),
                                        ('mmpretrain', 2), ('mmdet', 2)])
def test_weight_step_after_alpha_step_equals_plain_weight_step(kind, order):
    model = build_kind(kind, order=order)
    model.train()
    optim = make_optim(model, lr=0.01, clip=5)
    twin = copy.deepcopy(model)
    twin_optim = make_optim(twin, lr=0.01, clip=5)
    alpha0 = model.alphas.detach().clone()
    data = dict(train=raw_batch(kind, seed=1), search=raw_batch(kind, seed=2))
    torch.manual_seed(5)
    out = model.train_step(data, optim)
    assert set(out) == {'loss', 'loss_search'}
    assert not torch.equal(model.alphas, alpha0)
    with torch.no_grad():
        twin.alphas.copy_(model.alphas)
    torch.manual_seed(5)  # the same pass seed for the train half
    train, _ = twin._prepare(data)
    twin.weight_step(train, twin_optim['weights'])
    a, b = _state(model), _state(twin)
    for k in a:
        assert torch.allclose(a[k].double(), b[k].double(), atol=1e-6), k


@pytest.mark.parametrize('kind,orders', [('mmpretrain', (1, 2)),
                                         ('mmdet', (2, ))])
def test_same_seed_gives_bit_identical_alphas(kind, orders):
    for order in orders:
        runs = []
        for _ in range(2):
            model = build_kind(kind, order=order, seed=3)
            model.train()
            optim = make_optim(model, lr=0.01)
            torch.manual_seed(11)
            for it in range(2 if kind == 'mmpretrain' else 1):
                model.train_step(dict(train=raw_batch(kind, seed=2 * it),
                                      search=raw_batch(kind,
                                                       seed=2 * it + 1)),
                                 optim)
            runs.append(_state(model))
        assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
        assert not torch.equal(runs[0]['alphas'],
                               build_kind(kind, seed=3).alphas)


def test_mask_rcnn_counts_its_mask_loss():
    model = MODELS.build(dict(type='sase_mm.DARTSSearch', order=1,
                              supernet=mmdet_supernet(mask=True)))
    model.train()
    batch = raw_batch('mmdet', seed=1)
    from mmdet.structures.mask import BitmapMasks
    for sample in batch['data_samples']:
        masks = torch.zeros(3, 64, 64, dtype=torch.uint8)
        for i, (x0, y0, x1, y1) in enumerate(
                sample.gt_instances.bboxes.long().tolist()):
            masks[i, y0:y1, x0:x1] = 1
        sample.gt_instances.masks = BitmapMasks(masks.numpy(), 64, 64)
    train, _ = model._prepare(dict(train=batch, search=batch))
    _, keys = _reference_loss(model, train, model.mix())
    assert 'loss_mask' in keys
    (grad, ) = torch.autograd.grad(model.batch_loss(train, model.mix()),
                                   [model.alphas])
    assert grad.abs().sum() > 0


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize('attn_cfg', [None, dict(type='sase_mm.SASE')],
                         ids=['plain', 'fixed_block'])
def test_a_classifier_without_searchable_attention_is_refused(attn_cfg):
    cfg = mmpretrain_supernet()
    cfg['backbone']['attn_cfg'] = attn_cfg
    with pytest.raises(ValueError, match="no searchable attention.*"
                       "sase_mm.SASESearch.*position='after_conv3'"):
        MODELS.build(dict(type='sase_mm.DARTSSearch', supernet=cfg))


def test_a_detector_without_the_plugin_is_refused():
    cfg = mmdet_supernet()
    cfg.backbone.plugins = None
    with pytest.raises(ValueError, match='no searchable attention'):
        MODELS.build(dict(type='sase_mm.DARTSSearch', supernet=cfg))


class _TwoBlocks(torch.nn.Module):
    """Two searchable blocks built side by side, an alpha each."""

    def __init__(self):
        super().__init__()
        from sase_mm.models.sase import SASESearch
        self.a = SASESearch(4)
        self.b = SASESearch(4)

    def forward(self, x):
        return self.b(self.a(x)).mean(dim=(2, 3))


def test_the_search_binds_its_one_alpha_to_every_block():
    """Blocks that held alphas of their own read the search model's after
    build; theirs leave the state_dict."""
    alone = _TwoBlocks()
    assert alone.a.arch_alphas is not alone.b.arch_alphas
    model = MODELS.build(dict(type='sase_mm.DARTSSearch',
                              supernet=dict(type=_TwoBlocks)))
    assert model.supernet.a.arch_alphas is model.alphas
    assert model.supernet.b.arch_alphas is model.alphas
    assert [k for k in model.state_dict() if 'alpha' in k] == ['alphas']


def test_frozen_stages_and_checkpointing_are_refused():
    cfg = mmdet_supernet()
    cfg.backbone.frozen_stages = 1
    with pytest.raises(ValueError, match='frozen_stages=-1'):
        MODELS.build(dict(type='sase_mm.DARTSSearch', supernet=cfg))
    cfg = mmpretrain_supernet()
    cfg['backbone']['with_cp'] = True
    with pytest.raises(ValueError, match='with_cp=False'):
        MODELS.build(dict(type='sase_mm.DARTSSearch', supernet=cfg))


@pytest.mark.parametrize('kind', MM_KINDS)
def test_validation_predicts_through_the_models_own_head(kind):
    """A held-out split validates the supernet as the mm model predicts
    (its data_preprocessor, its predict), at softmax(alpha)."""
    model = build_kind(kind)
    model.eval()
    with torch.no_grad():
        out = model.val_step(raw_batch(kind, seed=1))
    assert len(out) == len(raw_batch(kind, seed=1)['inputs'])
    if kind == 'mmdet':
        assert all('bboxes' in o.pred_instances for o in out)
    else:
        assert all(o.pred_score.shape == (10, ) for o in out)
