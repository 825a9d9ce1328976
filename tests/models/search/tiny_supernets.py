"""Tiny DARTS supernets and batches for the search-model tests (SASE,
arXiv 2411.08333): a depth-8 CIFAR ResNet with 8 base channels on 8 x 8
inputs."""
import torch
from mmengine.optim import OptimWrapper, OptimWrapperDict

from sase_mm.models.sase import AlphaHolder, current_mix, init_alphas
from sase_mm.registry import MODELS

TINY_SUPERNET = dict(type='sase_mm.CifarResNet', depth=8, num_classes=10,
                     base_channels=8, input_size=8,
                     attn_cfg=dict(type='sase_mm.SASESearch'))


def build_tiny(order=2, dtype=torch.float32, seed=0, device='cpu',
               **kwargs):
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='sase_mm.DARTSSearch', order=order,
                              supernet=TINY_SUPERNET, **kwargs))
    # Larger alphas than the 1e-3 start, so that the mixing matters.
    with torch.no_grad():
        model.alphas.normal_(0, 0.5)
    return model.to(device, dtype)


def make_batch(n=6, dtype=torch.float32, seed=1, device='cpu'):
    g = torch.Generator().manual_seed(seed)  # the same draws on any device
    return dict(inputs=torch.randn(n, 3, 8, 8, generator=g,
                                   dtype=dtype).to(device),
                data_samples=torch.randint(0, 10, (n, ),
                                           generator=g).to(device))


def make_optim(model, lr=0.1, momentum=0.9, wd=5e-4, clip=None):
    weights = OptimWrapper(
        torch.optim.SGD(model.supernet.parameters(), lr=lr,
                        momentum=momentum, weight_decay=wd),
        clip_grad=None if clip is None else dict(max_norm=clip))
    alphas = OptimWrapper(torch.optim.Adam([model.alphas], lr=0.01,
                                           betas=(0.5, 0.999),
                                           weight_decay=1e-3))
    return OptimWrapperDict(weights=weights, alphas=alphas)


class ToySupernet(AlphaHolder, torch.nn.Module):
    """A smooth (tanh, no ReLU / max kinks) supernet driven by a (6, 7)
    alpha: six residual edges, each mixing seven 1x1 convs. Second-order
    finite differences are accurate on it at DARTS's radius, and every op
    is twice differentiable, so the exact unrolled gradient can be taken by
    double backward. It reads the alpha the search model binds to it and
    the mixing weights of the pass (``current_mix``)."""
    reads_alphas = True

    def __init__(self, num_classes=10, channels=6):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, channels, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(channels)
        self.edges = torch.nn.ModuleList(
            torch.nn.ModuleList(torch.nn.Conv2d(channels, channels, 1)
                                for _ in range(7)) for _ in range(6))
        self.fc = torch.nn.Linear(channels, num_classes)
        self.alphas = init_alphas()

    def forward(self, x):
        mix = current_mix(self.arch_alphas)
        x = torch.tanh(self.bn(self.stem(x)))
        for w, ops in zip(mix, self.edges):
            x = x + sum(wi * torch.tanh(op(x)) for wi, op in zip(w, ops))
        return self.fc(x.mean(dim=(2, 3)))


def build_toy(order=2, dtype=torch.float64, seed=0, device='cpu',
              **kwargs):
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='sase_mm.DARTSSearch', order=order,
                              supernet=dict(type=ToySupernet), **kwargs))
    with torch.no_grad():
        model.alphas.normal_(0, 0.5)
    return model.to(device, dtype)


# --------------------------------------------------------------------------
# The same search around OpenMMLab models: an mmpretrain ImageClassifier
# (a tiny SASEResNet-18 with SASESearch) and an mmdet Faster R-CNN (a tiny
# mmdet ResNet-50 with the SASESearch plug-in, FPN), 32 x 32 / 64 x 64.
# --------------------------------------------------------------------------
KINDS = ('cifar', 'mmpretrain', 'mmdet')
MMPRETRAIN_SIZE, MMDET_SIZE, MMDET_CLASSES = 32, 64, 3


def mmpretrain_supernet():
    """ImageClassifier: SASEResNet-18 at 8 base channels, two stages."""
    import mmpretrain.registry  # noqa: F401  (the mmpretrain scope)
    return dict(
        type='mmpretrain.ImageClassifier',
        data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor',
                               mean=[127.5] * 3, std=[64.0] * 3,
                               num_classes=10),
        backbone=dict(type='sase_mm.SASEResNet', depth=18, stem_channels=8,
                      base_channels=8, num_stages=2, strides=(1, 2),
                      dilations=(1, 1), out_indices=(1, ),
                      attn_cfg=dict(type='sase_mm.SASESearch',
                                    spatial_size=4)),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=10,
                  in_channels=16,
                  loss=dict(type='mmpretrain.CrossEntropyLoss')))


def mmdet_supernet(plugin=True, mask=False):
    """Faster (or Mask) R-CNN from mmdet's R50-FPN model config, shrunk:
    ResNet-50 at 4 base channels (stages 16..128 wide) with the SASESearch
    plug-in after conv3 (or SASEResNet-50 with ``plugin=False``), FPN 16
    wide, small heads, few samples."""
    import os.path as osp

    import mmdet
    import mmdet.registry  # noqa: F401  (the mmdet scope)
    from mmengine.config import Config
    name = 'mask-rcnn_r50_fpn.py' if mask else 'faster-rcnn_r50_fpn.py'
    cfg = Config.fromfile(osp.join(osp.dirname(mmdet.__file__), '.mim',
                                   'configs', '_base_', 'models', name))
    m = cfg.model
    m.type = 'mmdet.' + m.type
    # mmengine's BaseModel builds it from the root registry: scope it.
    m.data_preprocessor.type = 'mmdet.' + m.data_preprocessor.type
    backbone = dict(depth=50, stem_channels=8, base_channels=4,
                    frozen_stages=-1, norm_eval=False, init_cfg=None)
    search = dict(type='sase_mm.SASESearch')
    if plugin:
        m.backbone.update(backbone, plugins=[dict(cfg=search,
                                                  position='after_conv3')])
    else:
        m.backbone = dict(type='sase_mm.SASEResNet', out_indices=(0, 1, 2, 3),
                          attn_cfg=search, **backbone)
    m.neck.in_channels = [16, 32, 64, 128]
    m.neck.out_channels = 16
    m.rpn_head.update(in_channels=16, feat_channels=16)
    m.rpn_head.anchor_generator.scales = [4]
    m.roi_head.bbox_roi_extractor.out_channels = 16
    m.roi_head.bbox_head.update(in_channels=16, fc_out_channels=32,
                                num_classes=MMDET_CLASSES)
    if mask:
        m.roi_head.mask_roi_extractor.out_channels = 16
        m.roi_head.mask_head.update(in_channels=16, conv_out_channels=8,
                                    num_convs=1, num_classes=MMDET_CLASSES)
    m.train_cfg.rpn.sampler.num = 32
    m.train_cfg.rpn_proposal.update(nms_pre=100, max_per_img=32)
    m.train_cfg.rcnn.sampler.num = 16
    m.test_cfg.rpn.update(nms_pre=100, max_per_img=32)
    return m


def supernet_of(kind):
    if kind == 'cifar':
        return TINY_SUPERNET
    return mmpretrain_supernet() if kind == 'mmpretrain' else \
        mmdet_supernet()


def build_kind(kind, order=2, seed=0, **kwargs):
    """The tiny search model of a kind; alpha ~ N(0, 0.5^2) (float32)."""
    if kind == 'cifar':
        return build_tiny(order=order, seed=seed, **kwargs)
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='sase_mm.DARTSSearch', order=order,
                              supernet=supernet_of(kind), **kwargs))
    with torch.no_grad():
        model.alphas.normal_(0, 0.5)
    return model


def raw_batch(kind, n=None, seed=1):
    """A batch as the kind's dataloader yields it (before preprocessing)."""
    if kind == 'cifar':
        return make_batch(n or 6, seed=seed)
    g = torch.Generator().manual_seed(seed)
    if kind == 'mmpretrain':
        from mmpretrain.structures import DataSample
        n = n or 4
        return dict(
            inputs=[torch.randint(0, 256, (3, MMPRETRAIN_SIZE,
                                           MMPRETRAIN_SIZE), generator=g,
                                  dtype=torch.uint8) for _ in range(n)],
            data_samples=[DataSample().set_gt_label(int(k)) for k in
                          torch.randint(0, 10, (n, ), generator=g)])
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    n, s = n or 2, MMDET_SIZE
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, s, s), generator=g,
                                    dtype=torch.uint8))
        xy = torch.rand(3, 2, generator=g) * s * 0.6
        wh = 8 + torch.rand(3, 2, generator=g) * s * 0.3
        sample = DetDataSample(metainfo=dict(img_shape=(s, s),
                                             ori_shape=(s, s),
                                             scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, (xy + wh).clamp(max=s)], dim=1),
            labels=torch.randint(0, MMDET_CLASSES, (3, ), generator=g))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def kind_batches(kind, model, seeds=(1, 2)):
    """dict(train=, search=) preprocessed as train_step does (an mm model's
    halves with their pass seeds)."""
    train, search = model._prepare(dict(train=raw_batch(kind, seed=seeds[0]),
                                        search=raw_batch(kind,
                                                         seed=seeds[1])))
    return dict(train=train, search=search)

