# Baseline for the SASE comparison (Faster R-CNN R50-FPN 1x):
# GSoP (global second-order pooling)
# backbone; the SASE R50 schedule with only the attention block changed.

# Written by configs/imagenet/baselines/r50_gsop_8xb16_in1k.py.
pretrained = 'checkpoints/r50_gsop_8xb16_in1k.pth'

_base_ = '../sase_r50_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        attn_cfg=dict(_delete_=True, type='sase_mm.GSoP'),
        init_cfg=dict(checkpoint=pretrained)))
