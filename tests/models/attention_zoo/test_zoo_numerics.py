"""Each zoo module against its paper's formula, written out independently.

Small inputs (B=2..3, C<=32, a few pixels); parameters are randomised first
where the initial values would hide a term (e.g. zero gamma in GatedCT).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from sase_mm.models.attention_zoo import (CBAM, EAN, ECA, GCT, MCA, SE, SRM,
                                         GatedCT,
                                          SSA, GSoP, eca_kernel_size)

ATOL = 1e-5


def randomize_(module, std=0.5):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)
    return module


def bn_train(v, dims, weight, bias, eps=1e-5):
    """Batch norm in training mode: biased batch statistics over ``dims``."""
    mean = v.mean(dims, keepdim=True)
    var = v.var(dims, unbiased=False, keepdim=True)
    return (v - mean) / torch.sqrt(var + eps) * weight + bias


def conv1d_same(seq, weight):
    """Zero-padded 'same' correlation: (B, K, C) with (K, k) -> (B, C)."""
    b, kin, c = seq.shape
    k = weight.shape[-1]
    out = torch.zeros(b, c)
    for i in range(c):
        for j in range(k):
            src = i + j - k // 2
            if 0 <= src < c:
                out[:, i] += (seq[:, :, src] * weight[:, j]).sum(-1)
    return out


# ----------------------------------------------------------------- SE ------
def test_se_formula():
    c, r = 32, 16
    m = SE(c)
    x = torch.randn(2, c, 4, 5)
    w1, b1 = m.reduce.weight.view(c // r, c), m.reduce.bias
    w2, b2 = m.expand.weight.view(c, c // r), m.expand.bias
    z = x.mean((2, 3))
    s = torch.sigmoid(torch.relu(z @ w1.T + b1) @ w2.T + b2)
    torch.testing.assert_close(m(x), x * s[:, :, None, None], atol=ATOL,
                               rtol=0)


@pytest.mark.parametrize('kwargs,hidden', [
    (dict(), 2), (dict(reduction=4), 8), (dict(latent_channels=5), 5),
    (dict(latent_channels=0.25), 8), (dict(latent_channels=6.0), 6),
    (dict(latent_channels=0.01), 1), (dict(reduction=64), 1)])
def test_se_hidden_width_and_param_count(kwargs, hidden):
    c = 32
    m = SE(c, **kwargs)
    assert m.reduce.out_channels == hidden
    assert sum(p.numel() for p in m.parameters()) == 2 * c * hidden + \
        hidden + c


@pytest.mark.parametrize('bad', [0, -2, 1.0 + 1e-9, 1.5, True, '8'])
def test_se_rejects_bad_latent_channels(bad):
    with pytest.raises((ValueError, TypeError), match='latent_channels'):
        SE(32, latent_channels=bad)


# ---------------------------------------------------------------- SSA ------
@pytest.mark.parametrize('pool', ['avg', 'max'])
def test_ssa_formula_train_mode(pool):
    c = 6
    m = randomize_(SSA(c, pool=pool)).train()
    x = torch.randn(3, c, 4, 5)
    cam = x.mean((2, 3)) if pool == 'avg' else x.amax((2, 3))
    sal = torch.einsum('bc,bchw->bhw', cam, x)[:, None]
    sam = torch.sigmoid(bn_train(sal, (0, 2, 3), m.bn.weight, m.bn.bias))
    torch.testing.assert_close(m(x), sam * x, atol=ATOL, rtol=0)


def test_ssa_formula_eval_mode_uses_running_stats():
    c = 5
    m = randomize_(SSA(c))
    m.bn.running_mean.fill_(0.3)
    m.bn.running_var.fill_(2.0)
    m.eval()
    x = torch.randn(2, c, 3, 3)
    sal = (x.mean((2, 3), keepdim=True) * x).sum(1, keepdim=True)
    sam = torch.sigmoid((sal - 0.3) / math.sqrt(2.0 + 1e-5) * m.bn.weight
                        + m.bn.bias)
    torch.testing.assert_close(m(x), sam * x, atol=ATOL, rtol=0)


@pytest.mark.parametrize('c', [4, 64, 512])
def test_ssa_has_only_bn_parameters(c):
    m = SSA(c)
    names = sorted(n for n, _ in m.named_parameters())
    assert names == ['bn.bias', 'bn.weight']
    assert sum(p.numel() for p in m.parameters()) == 2


# ---------------------------------------------------------------- ECA ------
@pytest.mark.parametrize('c', [64, 256, 512, 2048, 1, 3, 100])
def test_eca_adaptive_kernel(c):
    # psi(C) = |log2(C) / gamma + b / gamma|_odd, gamma = 2, b = 1 (ECA-Net).
    t = int(abs(math.log(c, 2) / 2 + 1 / 2))
    expected = t if t % 2 == 1 else t + 1
    assert eca_kernel_size(c) == expected
    assert ECA(c).excite.convs[0].kernel_size == (expected, )


def test_eca_kernel_sizes_of_resnet_widths():
    # The values the ECA-Net paper's rule gives for ResNet's widths.
    assert [eca_kernel_size(c) for c in (64, 256, 512, 2048)] == [3, 5, 5, 7]


@pytest.mark.parametrize('k', [None, 3, 5])
def test_eca_formula(k):
    c = 16
    m = randomize_(ECA(c, kernel_size=k))
    x = torch.randn(2, c, 3, 4)
    w = m.excite.convs[0].weight.view(1, -1)
    a = torch.sigmoid(conv1d_same(x.mean((2, 3))[:, None], w))
    torch.testing.assert_close(m(x), x * a[:, :, None, None], atol=ATOL,
                               rtol=0)


def test_eca_rejects_even_kernel():
    with pytest.raises(ValueError, match='odd'):
        ECA(16, kernel_size=4)


# --------------------------------------------------------------- CBAM ------
def _cbam_reference(m, x, order='channel_first'):
    def mlp(v):
        h = torch.relu(F.conv2d(v, m.mlp[0].weight, m.mlp[0].bias))
        return F.conv2d(h, m.mlp[2].weight, m.mlp[2].bias)

    def channel(t):
        return t * torch.sigmoid(mlp(t.mean((2, 3), keepdim=True))
                                 + mlp(t.amax((2, 3), keepdim=True)))

    def spatial(t):
        pooled = torch.cat([t.mean(1, keepdim=True),
                            t.amax(1, keepdim=True)], 1)
        return t * torch.sigmoid(F.conv2d(pooled, m.spatial[0].weight,
                                          padding=3))

    if order == 'channel_first':
        return spatial(channel(x))
    return channel(spatial(x))


def test_cbam_channel_then_spatial():
    m = randomize_(CBAM(32))
    x = torch.randn(2, 32, 9, 8)
    out = m(x)
    torch.testing.assert_close(out, _cbam_reference(m, x), atol=ATOL, rtol=0)
    # The order is part of the definition: the other order differs.
    assert not torch.allclose(out, _cbam_reference(m, x, 'spatial_first'),
                              atol=1e-3)


def test_cbam_shapes_and_options():
    m = CBAM(32, spatial_bn=True, spatial_kernel=3, latent_channels=4)
    assert m.mlp[0].out_channels == 4
    assert m.spatial[0].weight.shape == (1, 2, 3, 3)
    assert isinstance(m.spatial[1], torch.nn.BatchNorm2d)
    with pytest.raises(ValueError, match='odd'):
        CBAM(32, spatial_kernel=6)


# ---------------------------------------------------------------- SRM ------
def test_srm_formula():
    c = 8
    m = randomize_(SRM(c)).train()
    x = torch.randn(3, c, 4, 4)
    flat = x.flatten(2)
    mean, std = flat.mean(-1), flat.std(-1)  # unbiased, as torch.std
    w = m.cfc.weight.view(c, 2)
    z = w[:, 0] * mean + w[:, 1] * std  # channel-wise fully connected
    g = torch.sigmoid(bn_train(z, (0, ), m.bn.weight, m.bn.bias))
    torch.testing.assert_close(m(x), x * g[:, :, None, None], atol=ATOL,
                               rtol=0)
    assert sum(p.numel() for p in m.parameters()) == 4 * c


# ---------------------------------------------------------------- GCT ------
@pytest.mark.parametrize('width', [2.0, 0.5])
def test_gaussian_gct_formula(width):
    # Ruan et al. 2021: GAP, normalise across C (biased var), Gaussian gate.
    c, eps = 8, 1e-5
    m = GCT(c, c=width)
    x = torch.randn(2, c, 3, 4) * 3 + 1
    z = x.mean((2, 3))
    z_hat = (z - z.mean(1, keepdim=True)) / torch.sqrt(
        z.var(1, unbiased=False, keepdim=True) + eps)
    gate = torch.exp(-z_hat**2 / (2 * width**2))
    torch.testing.assert_close(m(x), x * gate[:, :, None, None], atol=ATOL,
                               rtol=0)
    assert sum(p.numel() for p in m.parameters()) == 0


# ------------------------------------------------------------ GatedCT ------
def test_gated_ct_is_identity_at_init():
    m = GatedCT(16)
    x = torch.randn(2, 16, 5, 3)
    assert torch.equal(m(x), x)
    assert m.alpha.eq(1).all() and m.gamma.eq(0).all() and m.beta.eq(0).all()


@pytest.mark.parametrize('mode', ['l2', 'l1'])
def test_gated_ct_formula(mode):
    c, eps = 8, 1e-5
    m = randomize_(GatedCT(c, mode=mode))
    x = torch.randn(2, c, 3, 4)
    a, g, b = (p.view(1, c) for p in (m.alpha, m.gamma, m.beta))
    if mode == 'l2':
        s = a * torch.sqrt((x ** 2).sum((2, 3)) + eps)
        n = g * s / torch.sqrt((s ** 2).mean(1, keepdim=True) + eps)
    else:
        s = a * x.abs().sum((2, 3))
        n = g * s / (s.abs().mean(1, keepdim=True) + eps)
    gate = 1 + torch.tanh(n + b)
    torch.testing.assert_close(m(x), x * gate[:, :, None, None], atol=ATOL,
                               rtol=0)
    assert sum(p.numel() for p in m.parameters()) == 3 * c


# --------------------------------------------------------------- GSoP ------
def test_gsop_formula_eval_mode():
    c, d, mult, eps = 12, 6, 4, 1e-5
    m = randomize_(GSoP(c, reduced_channels=d, outputs_per_row=mult))
    for bn in (m.reduce[1], m.row.bn):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    m.eval()
    x = torch.randn(2, c, 3, 4)

    def bn_eval(v, bn):  # v: (B, n, ...), statistics per dim 1
        shape = (1, -1) + (1, ) * (v.dim() - 2)
        return ((v - bn.running_mean.view(shape))
                / torch.sqrt(bn.running_var.view(shape) + eps)
                * bn.weight.view(shape) + bn.bias.view(shape))

    conv = m.reduce[0]
    z = torch.einsum('oc,bchw->bohw', conv.weight.view(d, c), x)
    z = torch.relu(bn_eval(z + conv.bias.view(1, d, 1, 1), m.reduce[1]))
    zc = z.flatten(2) - z.flatten(2).mean(-1, keepdim=True)
    cov = torch.einsum('bip,bjp->bij', zc, zc) / zc.shape[-1]  # (B, d, d)
    cov = bn_eval(cov, m.row.bn)  # BN over the d rows
    rw = m.row.row_conv.weight.view(d * mult, d)  # output o reads row o//mult
    v = torch.stack([(cov[:, o // mult, :] * rw[o]).sum(-1)
                     for o in range(d * mult)], 1) + m.row.row_conv.bias
    v = torch.relu(v)
    a = torch.sigmoid(v @ m.expand.weight.view(c, d * mult).T
                      + m.expand.bias)
    torch.testing.assert_close(m(x), x * a[:, :, None, None], atol=1e-4,
                               rtol=0)


def test_gsop_param_count_matches_its_formula():
    c, d, mult = 64, 128, 4
    expected = (c * d + d) + 2 * d + 2 * d + (mult * d * d + mult * d) + \
        (mult * d * c + c)
    assert sum(p.numel() for p in GSoP(c).parameters()) == expected


# ---------------------------------------------------------------- MCA ------
@pytest.mark.parametrize('moments', [('mean', 'skew'), ('mean', 'std',
                                                         'skew')])
def test_mca_formula(moments):
    c, eps = 16, 1e-5
    m = randomize_(MCA(c, moments=moments))
    x = torch.randn(2, c, 4, 5) ** 2  # skewed, so the skew term matters
    flat = x.flatten(2)
    mu = flat.mean(-1)
    var = flat.var(-1, unbiased=False)
    table = dict(mean=mu, var=var, std=torch.sqrt(var + eps),
                 skew=((flat - mu[..., None]) ** 3).mean(-1)
                 / (var + eps) ** 1.5)
    seq = torch.stack([table[k] for k in moments], 1)  # (B, K, C)
    a = torch.sigmoid(conv1d_same(seq, m.cmc.weight[0]))
    torch.testing.assert_close(m(x), x * a[:, :, None, None], atol=ATOL,
                               rtol=0)
    assert m.cmc.kernel_size[0] == eca_kernel_size(c)


def test_mca_rejects_unknown_moment():
    with pytest.raises(ValueError, match='moment'):
        MCA(16, moments=('mean', 'kurtosis'))


# ---------------------------------------------------------------- EAN ------
def test_ean_formula():
    c, g, eps = 16, 4, 1e-5
    m = randomize_(EAN(c, groups=g))
    x = torch.randn(2, c, 3, 5)
    xg = x.view(2, g, -1)
    y = (xg - xg.mean(-1, keepdim=True)) / torch.sqrt(
        xg.var(-1, unbiased=False, keepdim=True) + eps)
    y = y.view_as(x) * m.norm.weight.view(1, c, 1, 1) + \
        m.norm.bias.view(1, c, 1, 1)
    s = torch.sqrt((y ** 2).sum((2, 3)) + eps).view(2, g, c // g)
    n = (s / torch.sqrt((s ** 2).mean(-1, keepdim=True) + eps)).view(2, c)
    gate = torch.sigmoid(m.excite.weight.view(1, c) * n
                         + m.excite.bias.view(1, c))
    torch.testing.assert_close(m(x), x * gate[:, :, None, None], atol=ATOL,
                               rtol=0)
    assert sum(p.numel() for p in m.parameters()) == 4 * c


def test_ean_gate_depends_on_channel_energy_within_group():
    m = EAN(16, groups=4)
    x = torch.randn(1, 16, 4, 4)
    louder = x.clone()
    louder[:, 0] *= 3
    gate = m(x) / x
    gate_louder = m(louder) / louder
    assert gate_louder[0, 0, 0, 0] > gate[0, 0, 0, 0] + 1e-3


def test_instance_norm_then_l2_is_input_independent():
    # Why EAN standardises per group: per-channel standardisation followed
    # by an l2 norm over the same H, W leaves no trace of the input.
    a, b = torch.randn(2, 8, 5, 5), 7 * torch.randn(2, 8, 5, 5) + 3
    emb = [F.instance_norm(t).square().sum((2, 3)).sqrt() for t in (a, b)]
    torch.testing.assert_close(emb[0], emb[1], atol=1e-3, rtol=0)


def test_ean_rejects_indivisible_groups():
    with pytest.raises(ValueError, match='divisible'):
        EAN(12, groups=8)
