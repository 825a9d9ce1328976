# Mask R-CNN R50-FPN 1x with the SASE block after the last BN of every
# bottleneck (SASE, arXiv 2411.08333; schedule: docs/spec.md section 5).
# Diff against mmdetection's config: backbone, pretrained weights, batch / lr.

# The SASE ResNet-50 trained on ImageNet (configs/imagenet/
# sase_r50_8xb16_in1k.py writes it). tools/train.py stops with a message when
# the file is missing; to train from scratch instead (not the paper's
# setting) pass `--cfg-options model.backbone.init_cfg=None`.
pretrained = 'checkpoints/sase_r50_8xb16_in1k.pth'

_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['sase_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='sase_mm.SASEResNet',
        attn_cfg=dict(type='sase_mm.SASE'),
        # replaces mmdet's `torchvision://resnet50` download.
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint=pretrained)))

# Paper: 8 images per iteration (e.g. 4 GPUs x 2), lr 0.01, steps at epochs
# 8 and 11 (mmdet's 1x). With --auto-scale-lr, lr = 0.01 * total_batch / 8.
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))
auto_scale_lr = dict(enable=False, base_batch_size=8)
# Atomic, hashed checkpoints that a kill or a full disk cannot damage.
default_hooks = dict(checkpoint=dict(type='sase_mm.SafeCheckpointHook'))
