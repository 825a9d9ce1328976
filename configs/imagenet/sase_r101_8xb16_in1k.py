# SASE ResNet-101 on ImageNet-1k (SASE, arXiv 2411.08333): the ResNet-50
# schedule (100 epochs, batch 128, lr 0.05 cosine to 0) at depth 101.
_base_ = './sase_r50_8xb16_in1k.py'

model = dict(backbone=dict(depth=101))
