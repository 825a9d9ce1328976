# Mask R-CNN R101-FPN 1x with the SASE block (SASE, arXiv 2411.08333).
# Paper: 4 images per iteration (e.g. 2 GPUs x 2), lr 0.005, steps 8 and 11.

# The SASE ResNet-101 trained on ImageNet (configs/imagenet/
# sase_r101_8xb16_in1k.py writes it).
pretrained = 'checkpoints/sase_r101_8xb16_in1k.pth'

_base_ = './sase_r50_fpn_1x_coco.py'

model = dict(backbone=dict(depth=101, init_cfg=dict(checkpoint=pretrained)))
optim_wrapper = dict(optimizer=dict(lr=0.005))
auto_scale_lr = dict(base_batch_size=4)
