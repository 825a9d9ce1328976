"""mmengine's ``compile`` option trains a SASE model (SASE,
arXiv 2411.08333).

A runner whose config sets ``compile`` compiles the model's ``train_step``
(mmengine ``Runner._maybe_compile``) and trains a few iterations of a tiny
CIFAR ResNet with the fixed SASE block. ``compile=dict(backend='aot_eager')``
rather than ``compile=True`` (inductor): the same dynamo capture, AOT
autograd and shape guards, without inductor's C++ code generation, which
takes minutes on two CPU cores (the inductor path of the block itself is
tested in ``test_compile.py``).
"""
import torch
import torch._dynamo
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.runner import Runner

from sase_mm.models.backbones import CifarResNet


class _Tiny(BaseModel):
    def __init__(self):
        super().__init__()
        self.net = CifarResNet(depth=8, base_channels=8, input_size=8,
                               attn_cfg=dict(type='sase_mm.SASE'))

    def forward(self, inputs, labels=None, mode='tensor'):
        logits = self.net(inputs)
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, labels))
        return logits


def _data(n=16):
    g = torch.Generator().manual_seed(0)
    return [dict(inputs=torch.randn(3, 8, 8, generator=g),
                 labels=torch.tensor(i % 10)) for i in range(n)]


def test_runner_with_compile_trains(tmp_path):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = _Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    runner = Runner(
        model=model, work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=_data(), batch_size=4, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
        train_cfg=dict(by_epoch=False, max_iters=3, val_interval=100),
        default_hooks=dict(checkpoint=None, logger=dict(
            type='LoggerHook', interval=1)),
        default_scope='mmengine',
        # what a config file's ``compile = ...`` line becomes
        cfg=dict(compile=dict(backend='aot_eager')))
    runner.train()
    # train_step was replaced by its compiled form, and it trained
    assert 'train_step' in vars(runner.model)  # the compiled function
    after = runner.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before
               if k.endswith('weight'))
    assert runner.iter == 3
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())
