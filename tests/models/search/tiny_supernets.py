"""Tiny DARTS supernets and batches for the search-model tests (SASE,
arXiv 2411.08333): a depth-8 CIFAR ResNet with 8 base channels on 8 x 8
inputs."""
import torch
from mmengine.optim import OptimWrapper, OptimWrapperDict

from sase_mm.registry import MODELS

TINY_SUPERNET = dict(type='sase_mm.CifarResNet', depth=8, num_classes=10,
                     base_channels=8, input_size=8,
                     attn_cfg=dict(type='sase_mm.SASESearch'))


def build_tiny(order=2, dtype=torch.float32, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='sase_mm.DARTSSearch', order=order,
                              supernet=TINY_SUPERNET, **kwargs))
    # Larger alphas than the 1e-3 start, so that the mixing matters.
    with torch.no_grad():
        model.alphas.normal_(0, 0.5)
    return model.to(dtype)


def make_batch(n=6, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return dict(inputs=torch.randn(n, 3, 8, 8, generator=g, dtype=dtype),
                data_samples=torch.randint(0, 10, (n, ), generator=g))


def make_optim(model, lr=0.1, momentum=0.9, wd=5e-4, clip=None):
    weights = OptimWrapper(
        torch.optim.SGD(model.supernet.parameters(), lr=lr,
                        momentum=momentum, weight_decay=wd),
        clip_grad=None if clip is None else dict(max_norm=clip))
    alphas = OptimWrapper(torch.optim.Adam([model.alphas], lr=0.01,
                                           betas=(0.5, 0.999),
                                           weight_decay=1e-3))
    return OptimWrapperDict(weights=weights, alphas=alphas)


class ToySupernet(torch.nn.Module):
    """A smooth (tanh, no ReLU / max kinks) supernet driven by a (6, 7)
    alpha: six residual edges, each mixing seven 1x1 convs. Second-order
    finite differences are accurate on it at DARTS's radius, and every op
    is twice differentiable, so the exact unrolled gradient can be taken by
    double backward."""
    searchable = True  # reads the search model's alpha (is_searchable)

    def __init__(self, alphas, num_classes=10, channels=6):
        super().__init__()
        self._alpha_ref = (alphas, )
        self.stem = torch.nn.Conv2d(3, channels, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(channels)
        self.edges = torch.nn.ModuleList(
            torch.nn.ModuleList(torch.nn.Conv2d(channels, channels, 1)
                                for _ in range(7)) for _ in range(6))
        self.fc = torch.nn.Linear(channels, num_classes)

    @property
    def arch_alphas(self):
        return self._alpha_ref[0]

    def forward(self, x, mix):
        x = torch.tanh(self.bn(self.stem(x)))
        for w, ops in zip(mix, self.edges):
            x = x + sum(wi * torch.tanh(op(x)) for wi, op in zip(w, ops))
        return self.fc(x.mean(dim=(2, 3)))


def build_toy(order=2, dtype=torch.float64, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='sase_mm.DARTSSearch', order=order,
                              supernet=dict(type=ToySupernet), **kwargs))
    with torch.no_grad():
        model.alphas.normal_(0, 0.5)
    return model.to(dtype)
