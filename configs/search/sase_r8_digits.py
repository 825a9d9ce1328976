# A real SASE search that runs anywhere in minutes: scikit-learn's 1,797
# handwritten digits (shipped with the package, nothing downloaded),
# upscaled to 16 x 16 x 3, split 40 / 40 / 20 into train (weights), search
# (alpha) and held-out parts. The search of sase_r20_cifar10.py (CIFAR
# ResNet + SASESearch, DARTS) on a CIFAR ResNet-8 (one block per stage, 3
# searchable blocks sharing one alpha), first order.
#
#   python tools/search.py configs/search/sase_r8_digits.py \
#       --work-dir work_dirs/demo
#
# Why these settings (measured in docs/results.md): the alphas decide by the
# number of alpha steps they get, so the step is made cheap: ResNet-8 on
# 16 x 16 images (about 1/10 of a ResNet-20 step at 32 x 32) and batches of
# 32; a 2-pixel random crop on the train and search halves keeps the
# weights from memorising 719 images before the alphas have moved. Adam on
# alpha: lr 6e-3 with beta2 0.99 (the large gradients of the first epochs
# leave its memory within ~100 steps) and no weight decay (the paper's 1e-3
# shrinks every alpha by about lr per step once the search loss is small,
# Adam normalising the decay term, and undid the margins this short search
# had built).
_base_ = ['./sase_r20_cifar10.py']

model = dict(order=1, supernet=dict(depth=8, input_size=16))
batch_size = 32
max_epochs = 60


def _part(split, shuffle=True):
    return dict(
        _delete_=True,
        batch_size=batch_size,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        collate_fn=dict(type='default_collate'),
        dataset=dict(type='sase_mm.DigitsSearch', split=split,
                     fractions=(0.4, 0.4, 0.2), size=16,
                     crop_padding=0 if split == 'val' else 2))


train_dataloader = _part('train')
val_dataloader = _part('val', shuffle=False)
val_evaluator = dict(type='sase_mm.TopKAccuracy', topk=(1, ))
train_cfg = dict(max_epochs=max_epochs, search_dataloader=_part('search'),
                 val_interval=max_epochs)

optim_wrapper = dict(
    weights=dict(optimizer=dict(lr=0.025)),
    alphas=dict(optimizer=dict(lr=6e-3, betas=(0.5, 0.99), weight_decay=0)))
param_scheduler = dict(
    weights=[dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=1e-4,
                  by_epoch=True, begin=0, end=max_epochs)],
    alphas=[])
default_hooks = dict(logger=dict(interval=23),
                     checkpoint=dict(max_keep_ckpts=1))
custom_hooks = [dict(type='sase_mm.GenotypeHook', interval=1,
                     margin_threshold=0.02, plot_interval=10)]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
