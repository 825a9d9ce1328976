# SASE search (arXiv 2411.08333; DARTS, docs/spec.md section 3) on the
# detector itself: an mmdet Faster R-CNN R50-FPN whose SASEResNet-50
# backbone has SASESearch in every bottleneck (one shared (6, 7) alpha), on
# COCO-format data split 50/50 into the weights' and alpha's halves by
# sase_mm.SearchSplit. The loss is the detector's own (RPN + ROI losses). A
# diff on mmdet's Faster R-CNN config: the model wrapped in DARTSSearch
# (backbone searched from scratch: no frozen stages, BN trained), the two
# halves, the two optimizers, the genotype hook. Beyond the paper (which
# searches on CIFAR-10 and transfers the block): docs/search_your_model.md.
#
#   python tools/search.py configs/search/sase_faster_rcnn_r50_fpn_coco.py
#
# Data: COCO in mmdet's layout under data/coco/ (annotations/
# instances_{train,val}2017.json, train2017/, val2017/); the train set is
# split, val2017 is the held-out split.
#
# Train the detector with the searched block: <work_dir>/genotype.py drops
# into the matching training config by `_base_` (the two lines are also
# written in genotype.py's header):
#   _base_ = ['sase_mm::faster_rcnn/sase_r50_fpn_1x_coco.py',
#             '<work_dir>/genotype.py']
#   model = dict(backbone=dict(attn_cfg=dict(genotype={{_base_.genotype}})))
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['sase_mm'], allow_failed_imports=False)

max_epochs = 12

supernet = _base_.model
supernet.backbone = dict(
    type='sase_mm.SASEResNet', depth=50, num_stages=4,
    out_indices=(0, 1, 2, 3), frozen_stages=-1,
    norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
    style='pytorch', attn_cfg=dict(type='sase_mm.SASESearch'), init_cfg=None)
model = dict(_delete_=True, type='sase_mm.DARTSSearch', order=2,
             supernet=supernet)


def _half(part):
    return dict(_base_.train_dataloader, dataset=dict(
        type='sase_mm.SearchSplit', part=part, fraction=0.5, seed=0,
        dataset=_base_.train_dataloader.dataset))


train_dataloader = dict(_delete_=True, **_half('train'))
train_cfg = dict(_delete_=True, type='sase_mm.DARTSLoop',
                 max_epochs=max_epochs, search_dataloader=_half('search'),
                 val_interval=max_epochs)

optim_wrapper = dict(
    _delete_=True,
    constructor='sase_mm.DARTSOptimWrapperConstructor',
    weights=dict(optimizer=dict(type='SGD', lr=0.02, momentum=0.9,
                                weight_decay=1e-4),
                 clip_grad=dict(max_norm=35, norm_type=2)),
    alphas=dict(optimizer=dict(type='Adam', lr=3e-4, betas=(0.5, 0.999),
                               weight_decay=1e-3)))
param_scheduler = dict(
    _delete_=True,
    # mmdet's linear warm-up (500 iterations), then cosine: the virtual
    # step of the second order takes the current lr.
    weights=[dict(type='LinearLR', start_factor=0.001, by_epoch=False,
                  begin=0, end=500),
             dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=1e-4,
                  by_epoch=True, begin=0, end=max_epochs)],
    alphas=[])
auto_scale_lr = None
default_hooks = dict(checkpoint=dict(type='sase_mm.SafeCheckpointHook',
                                     interval=1, max_keep_ckpts=3))
custom_hooks = [dict(
    type='sase_mm.GenotypeHook', interval=1,
    train_config='sase_mm::faster_rcnn/sase_r50_fpn_1x_coco.py')]
del supernet  # (only model.supernet is the config's)
