# SASE search (arXiv 2411.08333; DARTS, docs/spec.md section 3) on
# CIFAR-100: the paper's CIFAR-10 search (ResNet-20 + SASESearch, second
# order, the paper's hyper-parameters) with 100 classes. A diff on
# sase_r20_cifar10.py: the classifier and the dataset.
#
#   python tools/search.py configs/search/sase_r20_cifar100.py
#
# Data: the CIFAR-100 python version in data/cifar100/cifar-100-python
# (train, test, meta; never downloaded).
#
# Train with the searched block: <work_dir>/genotype.py drops into a
# training config by `_base_` (the two lines are also written in
# genotype.py's header), e.g. the ImageNet one:
#   _base_ = ['sase_mm::imagenet/sase_r50_8xb16_in1k.py',
#             '<work_dir>/genotype.py']
#   model = dict(backbone=dict(attn_cfg=dict(genotype={{_base_.genotype}})))
_base_ = ['./sase_r20_cifar10.py']

model = dict(supernet=dict(num_classes=100))
_cifar100 = dict(type='sase_mm.CIFAR100Search', data_root='data/cifar100')
train_dataloader = dict(dataset=_cifar100)
val_dataloader = dict(dataset=_cifar100)
train_cfg = dict(search_dataloader=dict(dataset=_cifar100))
custom_hooks = [dict(type='sase_mm.GenotypeHook', interval=1,
                     margin_threshold=0.02,
                     train_config='sase_mm::imagenet/sase_r50_8xb16_in1k.py')]
del _cifar100  # (a helper of this file)
