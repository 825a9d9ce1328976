# A real SASE search that runs anywhere in minutes: scikit-learn's 1,797
# handwritten digits (shipped with the package, nothing downloaded),
# upscaled to 32 x 32 x 3, split 40 / 40 / 20 into train (weights), search
# (alpha) and held-out parts. Same search as sase_r20_cifar10.py (ResNet-20
# + SASESearch, DARTS), shorter and first order.
#
#   python tools/search.py configs/search/sase_r20_digits.py \
#       --work-dir work_dirs/demo
_base_ = ['./sase_r20_cifar10.py']

model = dict(order=1)
batch_size = 64
max_epochs = 6


def _part(split, shuffle=True):
    return dict(
        _delete_=True,
        batch_size=batch_size,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        collate_fn=dict(type='default_collate'),
        dataset=dict(type='sase_mm.DigitsSearch', split=split,
                     fractions=(0.4, 0.4, 0.2), size=32))


train_dataloader = _part('train')
val_dataloader = _part('val', shuffle=False)
val_evaluator = dict(type='sase_mm.TopKAccuracy', topk=(1, ))
train_cfg = dict(max_epochs=max_epochs, search_dataloader=_part('search'),
                 val_interval=max_epochs)

optim_wrapper = dict(
    weights=dict(optimizer=dict(lr=0.05)),
    alphas=dict(optimizer=dict(lr=3e-3)))
param_scheduler = dict(
    weights=[dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=1e-4,
                  by_epoch=True, begin=0, end=max_epochs)],
    alphas=[])
default_hooks = dict(logger=dict(interval=4),
                     checkpoint=dict(max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
