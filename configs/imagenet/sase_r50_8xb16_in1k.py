# SASE ResNet-50 on ImageNet-1k from scratch (SASE, arXiv 2411.08333;
# schedule: docs/spec.md section 5): 100 epochs, 128 images per iteration
# (8 GPUs x 16), SGD lr 0.05 momentum 0.9 wd 1e-4, cosine to 0, standard
# ResNet augmentation (random-resized crop 224, flip). Diff against
# mmpretrain's ResNet-50 cosine config: backbone, batch and lr.
#
# Data: data/imagenet in mmpretrain's layout, train/ and val/ image folders
# plus meta/train.txt and meta/val.txt (`relative/path.JPEG label` lines);
# see docs/downstream.md.
_base_ = 'mmpretrain::resnet/resnet50_8xb32-coslr_in1k.py'
custom_imports = dict(imports=['sase_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='sase_mm.SASEResNet',
        # genotype: default the paper's searched block; a search result
        # (tools/search.py's genotype.json) goes here.
        attn_cfg=dict(type='sase_mm.SASE')))

train_dataloader = dict(batch_size=16)
val_dataloader = dict(batch_size=16)
test_dataloader = dict(batch_size=16)

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))
param_scheduler = dict(
    _delete_=True, type='CosineAnnealingLR', T_max=100, eta_min=0.0,
    by_epoch=True, begin=0, end=100)
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
# With --auto-scale-lr, lr = 0.05 * total_batch / 128.
auto_scale_lr = dict(enable=False, base_batch_size=128)
# Atomic, hashed checkpoints that a kill or a full disk cannot damage.
default_hooks = dict(checkpoint=dict(type='sase_mm.SafeCheckpointHook'))
