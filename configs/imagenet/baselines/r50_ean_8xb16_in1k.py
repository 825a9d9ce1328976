# Baseline for the SASE comparison (ImageNet-1k):
# EAN (efficient attention network),
# the SASE ResNet-50 schedule with only the attention block changed.
_base_ = '../sase_r50_8xb16_in1k.py'

model = dict(backbone=dict(attn_cfg=dict(_delete_=True, type='sase_mm.EAN')))
