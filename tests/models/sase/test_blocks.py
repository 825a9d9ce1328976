"""The searchable and the fixed SASE block (arXiv 2411.08333).

* With one-hot mixing weights the searchable block (``SASESearch``) equals
  the fixed block (``SASE``) derived from it, weights carried over.
* With dense weights it equals a naive evaluation of docs/spec.md section 1
  that runs every candidate operation alone (no shared statistics, no
  batching), so the optimised mixed edges are exact up to float rounding.
* One alpha per network, bound after build, with a single owner in the
  state_dict; the mixing weights come from the pass (``mixing``).
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sase_mm.models.sase import (EDGES, SASE, SASE_PAPER_GENOTYPE,
                                 Genotype, SASESearch, bind_alphas,
                                 init_alphas, mixing)

C, B, HW = 32, 3, (10, 9)


def _random_genotypes(n):
    gen = torch.Generator().manual_seed(7)
    def pick(edge):
        return edge.op_set.names[int(torch.randint(7, (1, ), generator=gen))]

    return [Genotype(pick(e) for e in EDGES) for _ in range(n)]


GENOTYPES = [SASE_PAPER_GENOTYPE] + _random_genotypes(6)


def _perturb(module):
    """Moves every parameter and BN buffer off its init so nothing cancels."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for name, buf in module.named_buffers():
            if name.endswith('running_var'):
                buf.uniform_(0.5, 1.5)
            elif name.endswith('running_mean'):
                buf.normal_(0, 0.1)


def _one_hot(genotype, device='cpu'):
    return F.one_hot(torch.tensor(genotype.indices()), 7).float().to(device)


def _mixed(search, x, mix):
    """The block at the mixing weights ``mix``, bound for the pass."""
    with mixing(search.arch_alphas, mix):
        return search(x)


@pytest.mark.parametrize('mode', ['train', 'eval'])
@pytest.mark.parametrize('genotype', GENOTYPES, ids=str)
def test_one_hot_search_equals_derived_block(genotype, mode, device):
    search = SASESearch(C, spatial_size=(8, 8))
    _perturb(search)
    search.to(device)
    fixed = search.derive(genotype)
    assert isinstance(fixed, SASE) and fixed.genotype == genotype
    search.train(mode == 'train')
    fixed.train(mode == 'train')
    x = torch.randn(B, C, *HW, device=device)
    y_search = _mixed(search, x, _one_hot(genotype, device))
    y_fixed = fixed(x)
    diff = (y_search - y_fixed).abs().max().item()
    print(f'{genotype} [{mode}]: max |search - fixed| = {diff:.3g}')
    assert torch.allclose(y_search, y_fixed, rtol=1e-5, atol=1e-5), diff


def test_one_hot_gradients_match(device):
    search = SASESearch(C, spatial_size=HW)
    _perturb(search)
    search.to(device)
    fixed = search.derive(SASE_PAPER_GENOTYPE)
    x = torch.randn(B, C, *HW, requires_grad=True, device=device)
    g = torch.randn(B, C, *HW, device=device)
    _mixed(search, x, _one_hot(SASE_PAPER_GENOTYPE, device)).backward(g)
    gx_search, x.grad = x.grad, None
    fixed(x).backward(g)
    assert torch.allclose(gx_search, x.grad, rtol=1e-4, atol=1e-5)
    for i, op in enumerate(SASE_PAPER_GENOTYPE):
        for name, p in fixed.edges[i].named_parameters():
            q = dict(search.edges[i].ops[op].named_parameters())[name]
            assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5), \
                (i, op, name)


def test_derive_default_is_argmax_of_alphas():
    alphas = init_alphas()
    with torch.no_grad():
        alphas.zero_()
        for i, j in enumerate(GENOTYPES[1].indices()):
            alphas[i, j] = 1
    search = SASESearch(C)
    search.use_alphas(alphas)
    assert search.genotype() == GENOTYPES[1]
    assert search.derive().genotype == GENOTYPES[1]


# ------------------------------------------------------------ dense mixing
def _naive_block(search, x, weights):
    """docs/spec.md section 1 with every edge a plain per-operation loop."""

    def edge(i, inp):
        return sum(w * op(inp) for w, op in zip(weights[i],
                                                search.edges[i].ops.values()))

    s1 = edge(0, x)
    s2 = edge(1, s1)
    s3 = edge(2, s1) * x
    mix = search.mixer
    s4 = F.relu(mix[1](F.conv2d(torch.cat([edge(3, s3), edge(4, x)], 1),
                                mix[0].weight)))
    s5 = edge(5, s4)
    return x * (s2 + s5) / 2 + x


@pytest.mark.parametrize('mode', ['train', 'eval'])
@pytest.mark.parametrize('hw,c', [(HW, C), ((7, 7), C), ((1, 1), C),
                                  ((17, 16), C), ((3, 2), 300)], ids=str)
def test_dense_mixture_matches_naive_loop(mode, hw, c):
    # (17, 16) and 300 channels: above the batched edges' dense limits, the
    # operations run one by one.
    search = SASESearch(c, spatial_size=(8, 8))
    _perturb(search)
    search.train(mode == 'train')
    weights = torch.randn(6, 7).softmax(-1)
    x = torch.randn(B, c, *hw, requires_grad=True)
    g = torch.randn(B, c, *hw)
    y = _mixed(search, x, weights)
    y.backward(g)
    # The weights bound for the pass are not the block's own alpha.
    assert search.arch_alphas.grad is None
    weights_of = [p for n, p in search.named_parameters() if n != 'alphas']
    grads = [x.grad] + [p.grad for p in weights_of]
    x.grad = None
    search.zero_grad()
    y_ref = _naive_block(search, x, weights)
    y_ref.backward(g)
    grads_ref = [x.grad] + [p.grad for p in weights_of]
    diff = (y - y_ref).abs().max().item()
    print(f'{hw} [{mode}]: max |mixed - naive| = {diff:.3g}')
    assert torch.allclose(y, y_ref, rtol=1e-5, atol=1e-5), diff
    for a, b in zip(grads, grads_ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_default_weights_are_softmax_of_alphas():
    search = SASESearch(C)
    x = torch.randn(B, C, *HW)
    y = search(x)
    assert torch.allclose(y, _mixed(search, x,
                                    search.arch_alphas.softmax(-1)))
    y.sum().backward()
    assert search.arch_alphas.grad is not None
    assert search.arch_alphas.grad.abs().sum() > 0


# ------------------------------------------------------------ alpha owner
def test_bound_alphas_not_registered():
    alphas = init_alphas()
    block = SASESearch(C)
    block.use_alphas(alphas)
    assert block.arch_alphas is alphas
    assert not block.owns_alphas
    assert not any('alphas' in k for k in block.state_dict())
    assert all(p is not alphas for p in block.parameters())


def test_bad_alpha_shape():
    with pytest.raises(ValueError, match=r'\(6, 7\)'):
        SASESearch(C).use_alphas(nn.Parameter(torch.zeros(6, 6)))


class _Toy(nn.Module):
    """A model of plug-in blocks, each built with nothing but its channels
    (as mmcv builds plug-ins)."""

    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, c, 1), SASESearch(c))
            for c in (8, 16, 32))
        self.head = SASESearch(8)


def test_plugins_have_an_alpha_each_until_bound():
    model = _Toy()
    blocks = [m for m in model.modules() if isinstance(m, SASESearch)]
    assert all(b.owns_alphas for b in blocks)
    assert len({id(b.arch_alphas) for b in blocks}) == 4


def test_bind_alphas_shares_the_first_blocks_alpha():
    model = _Toy()
    first = model.stages[0][1].arch_alphas
    assert bind_alphas(model) is first
    keys = [k for k in model.state_dict() if k.endswith('alphas')]
    assert keys == ['stages.0.1.alphas'], keys
    blocks = [m for m in model.modules() if isinstance(m, SASESearch)]
    assert len(blocks) == 4
    assert sum(b.owns_alphas for b in blocks) == 1
    assert all(b.arch_alphas is first for b in blocks)
    assert sum(p.numel() == 42 and p.shape == (6, 7)
               for p in model.parameters()) == 1
    assert bind_alphas(model) is first  # idempotent


def test_bind_alphas_of_an_owner():
    model = _Toy()
    alphas = init_alphas()
    assert bind_alphas(model, alphas) is alphas
    assert not any(k.endswith('alphas') for k in model.state_dict())
    assert all(m.arch_alphas is alphas for m in model.modules()
               if isinstance(m, SASESearch))


def test_bind_alphas_without_searchable_blocks():
    assert bind_alphas(nn.Sequential(nn.Conv2d(3, 3, 1))) is None


def test_two_models_get_separate_alphas():
    a, b = _Toy(), _Toy()
    alpha_a, alpha_b = bind_alphas(a), bind_alphas(b)
    assert alpha_a is not alpha_b
    assert all(m.arch_alphas is alpha_a for m in a.modules()
               if isinstance(m, SASESearch))
    assert all(m.arch_alphas is alpha_b for m in b.modules()
               if isinstance(m, SASESearch))


def test_bound_blocks_follow_the_owner_to_another_dtype():
    model = _Toy()
    alphas = bind_alphas(model)
    model.double()
    assert alphas.dtype == torch.float64
    assert all(m.arch_alphas is alphas for m in model.modules()
               if isinstance(m, SASESearch))


def test_standalone_block_owns_its_alpha():
    block = SASESearch(C)
    assert block.owns_alphas
    assert [k for k in block.state_dict() if 'alphas' in k] == ['alphas']
    assert block.arch_alphas.std() < 1e-2  # 1e-3 * N(0, 1)


@pytest.mark.parametrize('make', [lambda: SASE(C), lambda: SASESearch(C)],
                         ids=['SASE', 'SASESearch'])
def test_channels_last_and_batch_one(make):
    block = make()
    _perturb(block)
    for x in (torch.randn(B, C, *HW), torch.randn(1, C, 5, 3)):
        xc = x.clone().requires_grad_()
        xl = x.clone().to(memory_format=torch.channels_last).requires_grad_()
        block.eval()  # identical BN behaviour for both calls
        g = torch.randn_like(x)
        yc, yl = block(xc), block(xl)
        yc.backward(g)
        yl.backward(g)
        assert torch.allclose(yc, yl, rtol=1e-5, atol=1e-5)
        assert torch.allclose(xc.grad, xl.grad, rtol=1e-4, atol=1e-5)


# ------------------------------------------- one alpha per network, one home
SEARCH = dict(type='sase_mm.SASESearch')


def _cifar(**kw):
    from sase_mm.models.backbones import CifarResNet
    return CifarResNet(8, base_channels=8, input_size=8, attn_cfg=SEARCH,
                       **kw)


def _sase_resnet():
    from sase_mm.models.backbones import SASEResNet
    return SASEResNet(18, stem_channels=8, base_channels=8, attn_cfg=SEARCH)


def _darts(std=1e-3):
    from sase_mm.registry import MODELS
    return MODELS.build(dict(
        type='sase_mm.DARTSSearch', alpha_init_std=std,
        supernet=dict(type='sase_mm.CifarResNet', depth=8, base_channels=8,
                      input_size=8, attn_cfg=SEARCH)))


class _Classifier(nn.Module):
    """A model that is no alpha owner, with an owner backbone inside."""

    def __init__(self):
        super().__init__()
        self.backbone = _cifar()


class _TwoBackbones(nn.Module):
    """Two owners built side by side in one model's construction."""

    def __init__(self):
        super().__init__()
        self.a, self.b = _cifar(), _cifar()


class _PluginThenBackbone(nn.Module):
    """A plugin block first, then an owner, which has its own alpha."""

    def __init__(self):
        super().__init__()
        self.plugin = SASESearch(8)
        self.backbone = _cifar()


def test_alphas_are_drawn_by_the_block_and_the_owners_only():
    """An alpha is created in one function (``alphas.init_alphas``), called
    by the searchable block (its own alpha) and the owner models, in their
    ``__init__``."""
    import ast
    import pathlib

    import sase_mm
    root = pathlib.Path(sase_mm.__file__).parent
    callers = []
    for path in sorted(root.rglob('*.py')):
        tree = ast.parse(path.read_text(), str(path))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Call) and (
                        getattr(node.func, 'id', None) == 'init_alphas'
                        or getattr(node.func, 'attr', None) == 'init_alphas'):
                    callers.append((path.relative_to(root).as_posix(),
                                    func.name))
    assert sorted(callers) == [
        ('models/backbones/cifar_resnet.py', '__init__'),
        ('models/backbones/sase_resnet.py', '__init__'),
        ('models/sase/supernet.py', '__init__'),
        ('models/search/darts_search.py', '__init__')], callers


def _bound(model):
    bind_alphas(model)
    return model


OWNERS = {
    'cifar_resnet': (_cifar, ['alphas']),
    'sase_resnet': (_sase_resnet, ['alphas']),
    'darts_search': (_darts, ['alphas']),
    'block': (lambda: SASESearch(8), ['alphas']),
    'plugins': (lambda: _bound(_Toy()), ['stages.0.1.alphas']),
    'backbone_in_classifier': (_Classifier, ['backbone.alphas']),
}


@pytest.mark.parametrize('name', sorted(OWNERS))
def test_one_alpha_key_and_every_block_reads_it(name):
    build, keys = OWNERS[name]
    model = build()
    assert [k for k in model.state_dict() if k.endswith('alphas')] == keys
    (alpha, ) = [p for p in model.parameters() if p.shape == (6, 7)]
    blocks = [m for m in model.modules() if isinstance(m, SASESearch)]
    assert blocks and all(b.arch_alphas is alpha for b in blocks)


@pytest.mark.parametrize('build,owners', [
    (_TwoBackbones, ['a', 'b']), (_PluginThenBackbone, ['plugin', 'backbone'])
], ids=['side_by_side', 'plugin_then_backbone'])
def test_every_owner_has_its_own_alpha(build, owners):
    """An owner model always has its own alpha, and its blocks read it."""
    model = build()
    assert [k for k in model.state_dict() if k.endswith('alphas')] == [
        f'{o}.alphas' for o in owners]
    nets = [getattr(model, o) for o in owners]
    alphas = [net.arch_alphas for net in nets]
    assert alphas[0] is not alphas[1]
    for net, alpha in zip(nets, alphas):
        assert all(m.arch_alphas is alpha for m in net.modules()
                   if isinstance(m, SASESearch))


@pytest.mark.parametrize('name,std', [('cifar_resnet', 1e-3),
                                      ('sase_resnet', 1e-3),
                                      ('darts_search', 1e-3),
                                      ('darts_search', 0.5)])
def test_owner_draws_alpha_first_with_its_std(name, std):
    """The owner draws alpha before building any layer: with a seed, alpha
    is the first draw of the random stream."""
    torch.manual_seed(0)
    expected = std * torch.randn(6, 7)
    torch.manual_seed(0)
    model = _darts(std) if name == 'darts_search' else OWNERS[name][0]()
    assert torch.equal(model.alphas.detach(), expected)
