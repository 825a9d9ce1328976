"""One test per numeric detail of docs/spec.md section 2 (arXiv 2411.08333).

Each expected value is written here from the SPEC's text, independently of
``sase_mm``'s helpers, so an optimisation or refactor that changes a formula
(a mean for a sum, a biased for an unbiased std, a lost sigmoid, ...) fails
a test that names the detail.
"""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sase_mm.models.sase import (OP_SETS, SASE, SASE_PAPER_GENOTYPE,
                                      SASESearch, init_alphas)
from sase_mm.models.sase.alphas import ALPHA_INIT_STD

CS, SS = OP_SETS['channel_squeeze'], OP_SETS['spatial_squeeze']
CE, SE = OP_SETS['channel_excitation'], OP_SETS['spatial_excitation']
B, C, H, W = 2, 16, 6, 5


def close(a, b, tol=1e-5):
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.allclose(a, b, rtol=tol, atol=tol), (a - b).abs().max()


def _x(*shape):
    return torch.randn(*(shape or (B, C, H, W)))


def _set_merge(op, w0, w1):
    with torch.no_grad():
        op.merge.weight.copy_(torch.tensor([w0, w1]).view(1, 2, 1, 1))


# ------------------------------------------------------------- L4 pooling
def test_channel_l4_pooling_is_a_sum_not_a_mean():
    x = _x()
    expected = (x ** 4).sum(dim=(2, 3), keepdim=True) ** 0.25
    close(CS.build('l4_pool', C)(x), expected)


def test_spatial_l4_pooling_is_a_sum_over_channels():
    x = _x()
    expected = (x ** 4).sum(dim=1, keepdim=True) ** 0.25
    close(SS.build('l4_pool', C)(x), expected)


# ---------------------------------------------------------------- GAP+...
@pytest.mark.parametrize('w0,w1', [(1.0, -0.3), (-1.0, 0.6)])
def test_gap_gmp_shared_merge_then_relu(w0, w1):
    x = _x() + 2 * torch.randn(B, C, 1, 1)  # channel means of both signs
    op = CS.build('gap_gmp', C)
    assert op.merge.weight.shape == (1, 2, 1, 1)  # one pair for all channels
    _set_merge(op, w0, w1)
    lin = w0 * x.mean((2, 3), keepdim=True) + w1 * x.amax((2, 3), keepdim=True)
    assert (lin < 0).any() and (lin > 0).any()  # the ReLU matters here
    close(op(x), torch.relu(lin))
    sp = SS.build('gap_gmp', C)
    _set_merge(sp, w0, w1)
    close(sp(x), torch.relu(w0 * x.mean(1, keepdim=True) +
                            w1 * x.amax(1, keepdim=True)))


def test_std_is_unbiased():
    x = _x()
    n_hw, n_c = H * W, C
    for op_set, dims, n in ((CS, (2, 3), n_hw), (SS, (1, ), n_c)):
        op = op_set.build('gap_std', C)
        _set_merge(op, 0.0, 1.0)
        m = x.mean(dims, keepdim=True)
        std = (((x - m) ** 2).sum(dims, keepdim=True) / (n - 1)).sqrt()
        close(op(x), std)


def test_channel_skew_is_third_central_moment_not_normalised():
    x = _x().exp()  # skewed data: the moment and its normalised form differ
    op = CS.build('gap_skew', C)
    _set_merge(op, 0.0, 1.0)
    d = x - x.mean((2, 3), keepdim=True)
    m3 = (d ** 3).sum((2, 3), keepdim=True) / (H * W)
    assert (m3 > 0).all()
    close(op(x), m3)
    # ... and at another resolution it divides by that runtime size.
    x2 = torch.randn(B, C, 9, 3).exp()
    d2 = x2 - x2.mean((2, 3), keepdim=True)
    close(op(x2), (d2 ** 3).sum((2, 3), keepdim=True) / 27)


def test_spatial_skew_divides_by_channels():
    x = _x().exp()
    op = SS.build('gap_skew', C)
    _set_merge(op, 0.0, 1.0)
    d = x - x.mean(1, keepdim=True)
    close(op(x), torch.relu((d ** 3).sum(1, keepdim=True) / C))
    _set_merge(op, 0.0, -1.0)
    close(op(x), torch.relu(-(d ** 3).sum(1, keepdim=True) / C))


# ---------------------------------------------------------------- L2 norm
def test_channel_l2_norm_is_instance_norm_then_root_sum_of_squares():
    x = _x()
    op = CS.build('l2_norm', C)
    ref = nn.InstanceNorm2d(C, affine=True)
    with torch.no_grad():
        w, b = torch.rand(C) + 0.5, torch.randn(C)
        ref.weight.copy_(w)
        ref.bias.copy_(b)
        op.load_state_dict({'weight': w, 'bias': b})
    expected = ref(x).pow(2).sum((2, 3), keepdim=True).sqrt()
    close(op(x), expected)


def test_spatial_l2_norm_is_layer_norm_hw_then_root_over_channels():
    x = _x()
    op = SS.build('l2_norm', C, (H, W))
    ref = nn.LayerNorm((H, W))
    with torch.no_grad():
        w, b = torch.rand(H, W) + 0.5, torch.randn(H, W)
        ref.weight.copy_(w)
        ref.bias.copy_(b)
        op.load_state_dict({'weight': w, 'bias': b})
    close(op(x), ref(x).pow(2).sum(1, keepdim=True).sqrt())


# --------------------------------------------------- second-order pooling
def _capture_input(module):
    seen = []
    module.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    return seen


def test_channel_second_order_pooling_divides_by_reduced_minus_one():
    c = 32
    r = c // 4
    x = torch.randn(B, c, H, W)
    op = CS.build('cov_pool', c).eval()
    seen = _capture_input(op.cov.bn)
    y = op(x)
    # Adaptive average pooling along the channel axis to r = C/4 channels.
    z = F.adaptive_avg_pool1d(
        x.flatten(2).transpose(1, 2), r).transpose(1, 2)  # (B, r, HW)
    z = z - z.mean(-1, keepdim=True)
    cov = z @ z.transpose(1, 2) / (r - 1)
    close(seen[0].reshape(B, r, r), cov)
    # The rest: BN (eval), row-wise grouped conv, ReLU, 1x1 expansion.
    bn = op.cov.bn
    t = (cov - bn.running_mean.view(1, r, 1)) / torch.sqrt(
        bn.running_var.view(1, r, 1) + bn.eps)
    t = t * bn.weight.view(1, r, 1) + bn.bias.view(1, r, 1)
    rows = (t * op.cov.row_conv.weight.view(1, r, r)).sum(-1)  # (B, r)
    expected = torch.relu(rows) @ op.expand.weight.view(c, r).t()
    close(y, expected.view(B, c, 1, 1))


def test_spatial_second_order_pooling_divides_by_63():
    x = torch.randn(B, C, 12, 10)
    op = SS.build('cov_pool', C).eval()
    seen = _capture_input(op.cov.bn)
    y = op(x)
    z = F.adaptive_avg_pool2d(x, 8).flatten(2).transpose(1, 2)  # (B, 64, C)
    z = z - z.mean(-1, keepdim=True)
    cov = z @ z.transpose(1, 2) / 63
    close(seen[0].reshape(B, 64, 64), cov)
    assert y.shape == (B, 1, 12, 10)


# ----------------------------------------------------- channel excitation
@pytest.mark.parametrize('sigmoid', [False, True])
@pytest.mark.parametrize('c,hidden', [(64, 4), (16, 1), (8, 1)])
def test_fc_excitation_reduction_and_sigmoid(c, hidden, sigmoid):
    op = CE.build('fc', c, None, fc_sigmoid=sigmoid)
    sd = op.state_dict()
    w1, w2 = sd['reduce.weight'], sd['expand.weight']
    assert w1.shape == (hidden, c, 1, 1) and w2.shape == (c, hidden, 1, 1)
    assert not any('bias' in k for k in sd)
    s = torch.randn(16, c, 1, 1)
    y = torch.relu(s.flatten(1) @ w1.view(hidden, c).t()) @ w2.view(
        c, hidden).t()
    y = y.view(16, c, 1, 1)
    if sigmoid:
        y = torch.sigmoid(y)
    else:
        with torch.no_grad():  # unbounded: values outside [0, 1] survive
            op.expand.weight.mul_(50)
        y = y * 50
        assert (y.abs() > 1).any()
    close(op(s), y, tol=1e-4)


@pytest.mark.parametrize('name,k,depth', [('conv1d_k3_x3', 3, 3),
                                          ('conv1d_k3', 3, 1),
                                          ('conv1d_k5', 5, 1),
                                          ('conv1d_k7', 7, 1),
                                          ('conv1d_k3_x2', 3, 2)])
def test_conv1d_kernel_padding_and_chain(name, k, depth):
    op = CE.build(name, C)
    sd = op.state_dict()
    assert sorted(sd) == [f'convs.{i}.weight' for i in range(depth)]
    assert all(sd[f'convs.{i}.weight'].shape == (1, 1, k)
               for i in range(depth))
    s = torch.randn(B, C, 1, 1)
    y = s.view(B, 1, C)
    for i in range(depth):
        if i:
            y = torch.relu(y)
        y = F.conv1d(y, sd[f'convs.{i}.weight'], padding=k // 2)
    close(op(s), torch.sigmoid(y).view(B, C, 1, 1))


def test_channel_affine_init_and_formula():
    op = CE.build('affine', C)
    s = torch.randn(B, C, 1, 1)
    close(op(s), torch.sigmoid(s))  # a = 1, b = 0 at start
    sd = op.state_dict()
    assert sorted(sd) == ['bias', 'weight']
    a, b = torch.randn(C), torch.randn(C)
    op.load_state_dict({'weight': a.view(C, 1, 1), 'bias': b.view(C, 1, 1)})
    close(op(s), torch.sigmoid(a.view(1, C, 1, 1) * s + b.view(1, C, 1, 1)))


# ----------------------------------------------------- spatial excitation
@pytest.mark.parametrize('name,k', [('sep_conv_3', 3), ('sep_conv_5', 5)])
def test_separable_conv_is_1xk_then_kx1_without_relu(name, k):
    op = SE.build(name, C)
    sd = op.state_dict()
    assert sd['convs.0.weight'].shape == (1, 1, 1, k)
    assert sd['convs.1.weight'].shape == (1, 1, k, 1)
    s = torch.randn(B, 1, H, W)
    y = F.conv2d(s, sd['convs.0.weight'], padding=(0, k // 2))
    y = F.conv2d(y, sd['convs.1.weight'], padding=(k // 2, 0))
    close(op(s), torch.sigmoid(y))


@pytest.mark.parametrize('name,ks', [('conv_3x3', [3]), ('conv_5x5', [5]),
                                     ('conv_7x7', [7]),
                                     ('conv_3x3_x2', [3, 3])])
def test_square_spatial_convs(name, ks):
    op = SE.build(name, C)
    sd = op.state_dict()
    s = torch.randn(B, 1, H, W)
    y = s
    for i, k in enumerate(ks):
        assert sd[f'convs.{i}.weight'].shape == (1, 1, k, k)
        if i:
            y = torch.relu(y)  # 2 x conv 3x3: ReLU between
        y = F.conv2d(y, sd[f'convs.{i}.weight'], padding=k // 2)
    close(op(s), torch.sigmoid(y))


def test_spatial_affine_init_and_bilinear_resize():
    op = SE.build('affine', C, (8, 8))
    s = torch.randn(B, 1, 8, 8)
    close(op(s), torch.sigmoid(s))  # a = 1, b = 0 at start
    a, b = torch.randn(1, 8, 8), torch.randn(1, 8, 8)
    op.load_state_dict({'weight': a, 'bias': b})
    s = torch.randn(B, 1, 12, 5)  # another resolution: bilinear resize

    def up(p):
        return F.interpolate(p[None], size=(12, 5), mode='bilinear',
                             align_corners=False)
    close(op(s), torch.sigmoid(up(a) * s + up(b)))


def test_spatial_l2_norm_params_resized_bilinearly():
    op = SS.build('l2_norm', C, (8, 8))
    w, b = torch.rand(8, 8) + 0.5, torch.randn(8, 8)
    op.load_state_dict({'weight': w, 'bias': b})
    x = torch.randn(B, C, 5, 11)
    up = [F.interpolate(p[None, None], size=(5, 11), mode='bilinear',
                        align_corners=False)[0, 0] for p in (w, b)]
    expected = F.layer_norm(x, (5, 11), up[0], up[1], eps=1e-5)
    close(op(x), expected.pow(2).sum(1, keepdim=True).sqrt())


# ------------------------------------------------------------- the block
def _bn_eval(y, bn):
    out = (y - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    if bn.affine:
        out = out * bn.weight + bn.bias
    return out


def _randomise(block):
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.dim() <= 3 else 0))
        block.mixer[1].running_mean.fill_(0.3)
        block.mixer[1].running_var.fill_(1.7)


def test_paper_block_by_hand_keeps_identity_term():
    """out = x * (s2 + s5) / 2 + x for the paper genotype, by hand."""
    blk = SASE(C).eval()
    assert blk.genotype == SASE_PAPER_GENOTYPE
    _randomise(blk)
    sd = blk.state_dict()
    x = _x()
    # E0 GAP+GMP
    w = sd['edges.0.merge.weight'].flatten()
    s1 = torch.relu(w[0] * x.mean((2, 3), keepdim=True) +
                    w[1] * x.amax((2, 3), keepdim=True))
    # E1 FC (no sigmoid)
    hid = torch.relu(F.conv2d(s1, sd['edges.1.reduce.weight']))
    s2 = F.conv2d(hid, sd['edges.1.expand.weight'])
    # E2 channel affine gates the input
    gate = torch.sigmoid(sd['edges.2.weight'].view(1, C, 1, 1) * s1 +
                         sd['edges.2.bias'].view(1, C, 1, 1))
    s3 = gate * x
    # E3 L4 over C of s3, E4 GAP over C of x, mixer
    e3 = (s3 ** 4).sum(1, keepdim=True) ** 0.25
    e4 = x.mean(1, keepdim=True)
    mw = sd['mixer.0.weight'].flatten()
    s4 = torch.relu(_bn_eval(mw[0] * e3 + mw[1] * e4, blk.mixer[1]))
    # E5 2 x conv 3x3
    t = torch.relu(F.conv2d(s4, sd['edges.5.convs.0.weight'], padding=1))
    s5 = torch.sigmoid(F.conv2d(t, sd['edges.5.convs.1.weight'], padding=1))
    expected = x * (s2 + s5) / 2 + x
    close(blk(x), expected, tol=1e-4)
    # Without the identity term the block would differ by exactly x.
    assert (blk(x) - x * (s2 + s5) / 2 - x).abs().max() < 1e-4


@pytest.mark.parametrize('s5_shape,dtype5', [
    ((B, 1, H, W), torch.float32),  # the block's maps
    ((B, 1, 1, 1), torch.float32),  # maps that do not span x
    ((B, 1, H, W), torch.float64),  # mixed precision: torch's promotion
])
def test_block_output_formula_and_its_gradients(s5_shape, dtype5):
    """out = x * (s2 + s5) / 2 + x (docs/spec.md section 1), with the
    gradients of that formula, whatever the maps' shapes and dtypes."""
    from sase_mm.models.sase.dag import scaled_residual
    x = _x().requires_grad_()
    s2 = torch.randn(B, C, 1, 1, requires_grad=True)
    s5 = torch.randn(*s5_shape, dtype=dtype5, requires_grad=True)
    out = scaled_residual(x, s2, s5)
    want = x * (s2 + s5) / 2 + x
    assert out.dtype == want.dtype
    close(out, want)
    g = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(out, (x, s2, s5), g),
                    torch.autograd.grad(want, (x, s2, s5), g)):
        close(a, b)


def test_spatial_mixer_sees_gated_squeeze_then_input_squeeze():
    # Distinct E3 / E4 ops so swapping them would change the result.
    g = ['gap', 'conv1d_k3', 'affine', 'gap_gmp', 'l4_pool', 'conv_3x3']
    blk = SASE(C, genotype=g).eval()
    _randomise(blk)
    captured = {}

    def seen_input(inp):
        # Squeezes get (x, stats); E3 may get x=None and the (lazy) gated
        # map's statistics, whose ``.x`` is the map.
        return inp[0] if inp[0] is not None else inp[1].x

    for i in (3, 4):
        blk.edges[i].register_forward_hook(
            lambda m, inp, out, i=i: captured.update(
                {i: (seen_input(inp), out)}))
    blk.mixer.register_forward_hook(
        lambda m, inp, out: captured.update(mixer=out))
    x = _x()
    blk(x)
    gate = torch.sigmoid(blk.edges[2].weight.view(1, C, 1, 1) *
                         x.mean((2, 3), keepdim=True) +
                         blk.edges[2].bias.view(1, C, 1, 1))
    close(captured[3][0], gate * x)  # E3 squeezes s3 = E2(s1) * x
    assert captured[4][0] is x or torch.equal(captured[4][0], x)
    # M = Conv2d(2 -> 1, 1x1) on cat[E3(s3), E4(x)], BN, ReLU.
    cat = torch.cat([captured[3][1], captured[4][1]], 1)
    conv = F.conv2d(cat, blk.mixer[0].weight)
    close(captured['mixer'], torch.relu(_bn_eval(conv, blk.mixer[1])))


def test_mixer_bn_affine_only_in_fixed_block():
    search = SASESearch(C)
    fixed = SASE(C)
    assert not search.mixer[1].affine
    assert search.mixer[1].weight is None
    assert fixed.mixer[1].affine
    assert torch.equal(fixed.mixer[1].weight, torch.ones(1))
    assert torch.equal(fixed.mixer[1].bias, torch.zeros(1))
    assert search.mixer[0].weight.shape == (1, 2, 1, 1)
    assert search.mixer[0].bias is None


def test_alpha_init_std():
    assert ALPHA_INIT_STD == 1e-3
    torch.manual_seed(0)
    a = torch.cat([init_alphas().flatten() for _ in range(50)])
    assert a.shape == (2100, )
    assert math.isclose(a.std().item(), 1e-3, rel_tol=0.1)
    assert abs(a.mean().item()) < 2e-4


@pytest.mark.parametrize('set_name,dims', [('channel_squeeze', (2, 3)),
                                           ('spatial_squeeze', (1, ))])
def test_gmp_gradient_shared_by_ties_as_amax(set_name, dims):
    # Ties (a ReLU'd map, repeated maxima) split the max's gradient equally,
    # as torch.amax's gradient does.
    x = torch.relu(torch.randn(B, C, H, W)).round()
    x[:, :, 0, 0] = x.amax(dim=(1, 2, 3), keepdim=True)[:, :, 0, 0]
    op = OP_SETS[set_name].build('gap_gmp', C)
    _set_merge(op, 0.5, 1.0)
    g = torch.rand(*op(x).shape)
    xa = x.clone().requires_grad_()
    op(xa).backward(g)
    xb = x.clone().requires_grad_()
    ref = torch.relu(0.5 * xb.mean(dims, keepdim=True) +
                     xb.amax(dims, keepdim=True))
    ref.backward(g)
    close(xa.grad, xb.grad, tol=1e-6)


def test_block_backward_matches_finite_differences():
    blk = SASE(4, spatial_size=(3, 3)).double().eval()
    _randomise(blk)
    x = torch.randn(2, 4, 3, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(blk, (x, ), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize('hw,out', [((32, 32), (8, 8)), ((12, 10), (8, 8)),
                                    ((7, 7), (8, 8)), ((1, 1), (8, 8)),
                                    ((8, 8), (12, 5)), ((8, 8), (1, 1))])
def test_second_order_pooling_grid_is_adaptive_average_pooling(hw, out):
    # The spatial second-order pooling's 8x8 grid and its way back to H, W
    # are adaptive average pooling (computed as two small matrix products).
    from sase_mm.models.layers import adaptive_avg_pool
    x = torch.randn(B, 3, *hw)
    close(adaptive_avg_pool(x, out), F.adaptive_avg_pool2d(x, out))
