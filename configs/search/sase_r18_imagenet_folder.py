# SASE search (arXiv 2411.08333; DARTS, docs/spec.md section 3) on your own
# images: an mmpretrain ImageClassifier with a SASEResNet-18 whose blocks
# are SASESearch (one shared (6, 7) alpha), on an ImageNet-format image
# folder read by mmpretrain's CustomDataset and split 50/50 into the weights'
# and alpha's halves by sase_mm.SearchSplit. A diff on mmpretrain's
# ResNet-18 config: the model wrapped in DARTSSearch, the two halves, the two
# optimizers and the genotype hook. Beyond the paper (which searches on
# CIFAR-10 and transfers the block): docs/search_your_model.md.
#
#   python tools/search.py configs/search/sase_r18_imagenet_folder.py
#
# Data: <data_root>/train/<class name>/*.JPEG, one folder per class. For
# your set, edit `data_root` and `num_classes` below (in a copy, or a
# derived config that repeats the keys they fill:
# train_dataloader.dataset.dataset.data_root,
# train_cfg.search_dataloader.dataset.dataset.data_root,
# model.supernet.head.num_classes,
# model.supernet.data_preprocessor.num_classes).
#
# Train with the searched block: <work_dir>/genotype.py drops into the
# matching training config by `_base_` (the two lines are also written in
# genotype.py's header):
#   _base_ = ['sase_mm::imagenet/sase_r50_8xb16_in1k.py',
#             '<work_dir>/genotype.py']
#   model = dict(backbone=dict(attn_cfg=dict(genotype={{_base_.genotype}})))
_base_ = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'
custom_imports = dict(imports=['sase_mm'], allow_failed_imports=False)

data_root = 'data/imagenet_folder'
num_classes = 1000
batch_size = 32
max_epochs = 50

supernet = _base_.model
supernet.backbone = dict(type='sase_mm.SASEResNet', depth=18,
                         attn_cfg=dict(type='sase_mm.SASESearch'))
supernet.head.num_classes = num_classes
supernet.data_preprocessor = dict(_base_.data_preprocessor,
                                  type='ClsDataPreprocessor',
                                  num_classes=num_classes)
# (the runner would hand the top-level one to DARTSSearch: the search uses
# the classifier's own.)
data_preprocessor = None
model = dict(_delete_=True, type='sase_mm.DARTSSearch', order=2,
             supernet=supernet)


def _half(part):
    return dict(
        batch_size=batch_size,
        num_workers=4,
        persistent_workers=True,
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(type='sase_mm.SearchSplit', part=part, fraction=0.5,
                     seed=0,
                     dataset=dict(type='CustomDataset', data_root=data_root,
                                  data_prefix='train',
                                  pipeline=_base_.train_pipeline)))


train_dataloader = dict(_delete_=True, **_half('train'))
train_cfg = dict(_delete_=True, type='sase_mm.DARTSLoop',
                 max_epochs=max_epochs, search_dataloader=_half('search'))
# No held-out split by default (the search's product is the genotype); add
# a val_dataloader / val_evaluator / val_cfg for one.
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None

optim_wrapper = dict(
    _delete_=True,
    constructor='sase_mm.DARTSOptimWrapperConstructor',
    weights=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9,
                                weight_decay=1e-4),
                 clip_grad=dict(max_norm=5)),
    alphas=dict(optimizer=dict(type='Adam', lr=3e-4, betas=(0.5, 0.999),
                               weight_decay=1e-3)))
param_scheduler = dict(
    _delete_=True,
    weights=[dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=1e-4,
                  by_epoch=True, begin=0, end=max_epochs)],
    alphas=[])
auto_scale_lr = None
default_hooks = dict(checkpoint=dict(type='sase_mm.SafeCheckpointHook',
                                     interval=1, max_keep_ckpts=3))
custom_hooks = [dict(type='sase_mm.GenotypeHook', interval=1,
                     train_config='sase_mm::imagenet/sase_r50_8xb16_in1k.py')]
del supernet  # (only model.supernet is the config's)
