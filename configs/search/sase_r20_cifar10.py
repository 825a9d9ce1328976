# SASE search (arXiv 2411.08333, docs/spec.md section 3): DARTS, second order,
# on CIFAR-10 with ResNet-20 + SASESearch after every basic block, one
# shared (6, 7) alpha. The paper's hyper-parameters: 50 epochs, batch 128,
# the 50,000 training images split 50/50 (weights / alpha); weights SGD
# 0.025 / 0.9 / 5e-4, cosine to 1e-4, gradient clip 5; alpha Adam 3e-4,
# betas (0.5, 0.999), weight decay 1e-3, constant lr.
#
#   python tools/search.py configs/search/sase_r20_cifar10.py
#   bash tools/dist_search.sh configs/search/sase_r20_cifar10.py 8
#
# Data: the CIFAR-10 python version in data/cifar10/cifar-10-batches-py
# (never downloaded). The genotype is written to <work_dir>/genotype.py.
default_scope = 'sase_mm'

model = dict(
    type='sase_mm.DARTSSearch',
    order=2,  # the paper's second-order approximation; 1 for first order
    supernet=dict(
        type='sase_mm.CifarResNet',
        depth=20,
        num_classes=10,
        input_size=32,
        attn_cfg=dict(type='sase_mm.SASESearch')))

data_root = 'data/cifar10'
batch_size = 128


def _half(split, shuffle=True):
    return dict(
        batch_size=batch_size,
        num_workers=2,
        persistent_workers=True,
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        collate_fn=dict(type='default_collate'),
        dataset=dict(type='sase_mm.CIFAR10Search', data_root=data_root,
                     split=split, search_fraction=0.5,
                     augment=split != 'test'))


train_dataloader = _half('train')
val_dataloader = _half('test', shuffle=False)
val_evaluator = dict(type='sase_mm.TopKAccuracy', topk=(1, 5))

train_cfg = dict(type='sase_mm.DARTSLoop', max_epochs=50,
                 search_dataloader=_half('search'), val_interval=10)
val_cfg = dict()

optim_wrapper = dict(
    constructor='sase_mm.DARTSOptimWrapperConstructor',
    weights=dict(
        optimizer=dict(type='SGD', lr=0.025, momentum=0.9,
                       weight_decay=5e-4),
        clip_grad=dict(max_norm=5)),
    alphas=dict(
        optimizer=dict(type='Adam', lr=3e-4, betas=(0.5, 0.999),
                       weight_decay=1e-3)))
# Keyed by optimizer: the cosine anneals the weights only (a plain list
# would anneal the alpha lr too).
param_scheduler = dict(
    weights=[dict(type='CosineAnnealingLR', T_max=50, eta_min=1e-4,
                  by_epoch=True, begin=0, end=50)],
    alphas=[])

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='sase_mm.SafeCheckpointHook', interval=1,
                    max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'))
# margin_threshold: edges whose best weight leads the second best by less
# are reported as not yet decided.
custom_hooks = [dict(type='sase_mm.GenotypeHook', interval=1,
                     margin_threshold=0.02)]

env_cfg = dict(cudnn_benchmark=False,
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=True)
log_level = 'INFO'
randomness = dict(seed=0, deterministic=False)
load_from = None
resume = False
