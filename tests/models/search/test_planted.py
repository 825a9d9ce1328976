"""Planted architectures: the search finds an operation that is provably
the best on its edge (SASE, arXiv 2411.08333; DARTS, docs/spec.md
section 3).

Each task plants one operation on one edge of a ``SASESearch`` block, one
edge of each of the four operation sets. The target is that operation's own
output (a frozen teacher with chosen weights, copied into the student's
candidate), so with the planted operation alone the loss is zero, and the
task is built so that no other operation of the set can produce it at any
weights:

* channel squeeze, ``gap_std``: ``relu(std - mean)`` per channel of inputs
  ``mean + std * z`` with independent random mean and std. Only GAP+std
  reads both statistics (GAP reads the mean alone; the L2 norm reads the
  map after instance normalisation, which has neither; L4, GAP+GMP,
  GAP+skew and the covariance pooling read other statistics);
* channel excitation, ``conv1d_k7``: a 1-D kernel with weight only on its
  outer taps (+-3). No other operation sees channels 3 apart: the k = 3
  and k = 5 convolutions and the two k = 3 ones (receptive field 5) do not
  reach them, the three k = 3 ones pass single-channel ReLUs (no signed
  linear map), the FC layer has rank C / 16 = 1 here, and the affine
  operation is per channel;
* spatial squeeze, ``gap_std``: as the channel squeeze, over the channel
  axis;
* spatial excitation, ``conv_7x7``: a ring-shaped 7 x 7 kernel; no other
  operation has a receptive field of 7.

The other edges are irrelevant by construction: the supernet runs the
planted edge's mixed operation alone, so the other rows of alpha get no
gradient. The whole search runs: ``DARTSSearch.train_step`` (alpha step,
first or second order, then weight step) through the mixing weights bound
for each pass, and the test asks for the planted operation as the argmax of
its edge, decided (margin >= 0.02, the decision threshold of the genotype
hook) within 20 iterations. The hypergradient tests (``test_architect.py``,
``test_darts_search.py``) check the maths; these check that it searches.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper, OptimWrapperDict

from sase_mm.models.sase import EDGES, SASESearch, current_mix
from sase_mm.registry import MODELS
from sase_mm.visualization.alpha_plots import edge_margins

C, H, B = 16, 8, 32
STEPS = 20
DECIDED = 0.02


class PlantedEdge(BaseModel):
    """One edge of a SASESearch block, trained to a regression target.

    ``loss(inputs, data_samples)``: the mean squared error of the edge's
    mixed operation (mixed by the pass's weights) on ``inputs`` against
    ``data_samples``.
    """

    def __init__(self, edge: int):
        super().__init__()
        self.edge = edge
        self.block = SASESearch(C, spatial_size=(H, H))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        mix = current_mix(self.block.arch_alphas)
        out = self.block.edges[self.edge](inputs, mix[self.edge])
        if mode == 'loss':
            return dict(loss=F.mse_loss(out, data_samples))
        return out


def _moments_input(gen, dims):
    """``mean + std * z``: z of zero mean and unit std over ``dims``, mean
    in [-1, 1] and std in [0, 2], independent, per slice."""
    z = torch.randn(B, C, H, H, generator=gen)
    z = z - z.mean(dims, keepdim=True)
    z = z / z.std(dims, keepdim=True)
    shape = [1 if d in dims else n for d, n in enumerate((B, C, H, H))]
    mean = 2 * torch.rand(shape, generator=gen) - 1
    std = 2 * torch.rand(shape, generator=gen)
    return mean + std * z


def _relu_std_minus_mean(op):
    op.merge.weight.copy_(torch.tensor([-1., 1.]).view_as(op.merge.weight))


def _outer_taps(op):
    (w, ) = [p for p in op.parameters()]
    w.zero_()
    w.view(-1)[0], w.view(-1)[-1] = 1.5, -1.5


def _ring(op):
    (w, ) = [p for p in op.parameters()]
    ring = torch.zeros(7, 7)
    ring[0, :], ring[-1, :] = 1., -1.
    ring[1:-1, 0], ring[1:-1, -1] = .5, -.5
    w.copy_(ring.view_as(w))


# edge index -> (planted operation, its weights, the task's inputs)
PLANTED = {
    0: ('gap_std', _relu_std_minus_mean,
        lambda g: _moments_input(g, (2, 3))),
    2: ('conv1d_k7', _outer_taps,
        lambda g: torch.randn(B, C, 1, 1, generator=g)),
    3: ('gap_std', _relu_std_minus_mean,
        lambda g: _moments_input(g, (1, ))),
    5: ('conv_7x7', _ring,
        lambda g: torch.randn(B, 1, H, H, generator=g)),
}


def test_one_planted_edge_per_operation_set():
    assert sorted({EDGES[e].op_set.name for e in PLANTED}) == sorted(
        {e.op_set.name for e in EDGES})


def _search(edge, order, seed=0):
    op, set_weights, inputs = PLANTED[edge]
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='sase_mm.DARTSSearch', order=order,
                              supernet=dict(type=PlantedEdge, edge=edge)))
    candidate = model.supernet.block.edges[edge].ops[op]
    teacher = copy.deepcopy(candidate).eval().requires_grad_(False)
    with torch.no_grad():
        set_weights(teacher)
    candidate.load_state_dict(teacher.state_dict())
    gen = torch.Generator().manual_seed(seed + 1)

    def batch():
        x = inputs(gen)
        with torch.no_grad():
            return dict(inputs=x, data_samples=teacher(x))

    optim = OptimWrapperDict(
        weights=OptimWrapper(torch.optim.SGD(
            model.supernet.parameters(), lr=0.01, momentum=0.9)),
        alphas=OptimWrapper(torch.optim.Adam(
            [model.alphas], lr=0.1, betas=(0.5, 0.999))))
    model.train()
    rows = [model.alphas.detach().clone()]
    for _ in range(STEPS):
        model.train_step(dict(train=batch(), search=batch()), optim)
        rows.append(model.alphas.detach().clone())
    return model, op, rows


@pytest.mark.parametrize('order', [1, 2])
@pytest.mark.parametrize('edge', sorted(PLANTED),
                         ids=[EDGES[e].name for e in sorted(PLANTED)])
def test_the_search_finds_the_planted_operation(edge, order):
    model, op, rows = _search(edge, order)
    genotype = model.genotype()
    probs = model.mix().detach()
    margin = float(edge_margins(probs)[edge])
    assert genotype[edge] == op, (genotype[edge], probs[edge].tolist())
    assert margin >= DECIDED, (margin, probs[edge].tolist())
    # Only the planted edge's row of alpha moved: the others are
    # irrelevant to the loss, and their gradient is zero.
    others = [i for i in range(len(EDGES)) if i != edge]
    assert torch.equal(rows[-1][others], rows[0][others])
    assert not torch.equal(rows[-1][edge], rows[0][edge])
