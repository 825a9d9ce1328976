"""The compiled kernels' loader and the statistics kernels,
``layers/compiled.py`` and ``layers/csrc/sase_stats.cpp`` (SASE, arXiv
2411.08333).

The loader: a first build says what it compiles, that it happens once, how
long it takes and where the cache is, and again when it is done; a cached
build is silent; ``SASE_MM_NO_EXT=1`` skips it; a failed build warns and
the PyTorch path takes over. Each statistics kernel against the Python
definition it restates (``KERNEL_PAIRS``; every kernel has one): the
``moments`` kernels against the values and gradient terms of
``stat_formulas.py``, the spatial L2 norm's and the window means' against
their plain references (``squeeze.py``), in float64 and float32, on
shapes with ties, odd sizes, H * W = 1, C = 1 and more columns than one
task takes.
"""
import os
import re

import pytest
import torch
from data_utils.stat_paths import built_stats_kernels

from sase_mm.models.layers import compiled
from sase_mm.models.layers.dims import C_DIMS, HW_DIMS, count
from sase_mm.models.layers.grad_terms import assemble
from sase_mm.models.layers.squeeze import _LayerNormSquareSum, _WindowMean
from sase_mm.models.layers.stat_formulas import (Amax, CentralSums, Pow4Sum,
                                                 Sum)

# (B, C, H, W): small with ties (made below), odd, H * W = 1, C = 1, and
# 300 positions (over C, more than one task of columns).
SHAPES = [(2, 5, 3, 4), (3, 7, 5, 3), (2, 5, 1, 1), (2, 1, 3, 4),
          (2, 3, 20, 15)]
DTYPES = [torch.float64, torch.float32]


def _map(shape, dtype):
    """A map with repeated maxima over H, W and over C where it can."""
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    b, c, h, w = shape
    if h * w > 1:
        x[0, 0, 0, 0] = x[0, 0, -1, -1] = x[0, 0].max() + 1
    if c > 1:
        x[-1, :, 0, 0] = x[-1, :, 0, 0].max()
    return x.to(dtype).contiguous()


def _close(dtype):
    return (dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else
            dict(rtol=1e-4, atol=1e-4))


def _rows(t, x, dims):
    """A statistic in the kernels' layout: (B, C) over H, W, (B, N) over
    C."""
    return t.reshape(x.shape[0], -1)


# ------------------------------------------------------------------ pairs
def _pair_moments(k, x, dims, dtype):
    over_c = dims == C_DIMS
    got = k.moments(x, over_c, True)
    s = Sum.value(x, dims)
    m = Amax.value(x, dims)
    s2, s3 = CentralSums.value(x, s / count(x.shape, dims), dims)
    want = [s, m, Pow4Sum.value(x, dims), Amax.ties(x, m, dims), s2, s3]
    first = k.moments(x, over_c, False)  # one pass: no ties, no central
    assert [t is None for t in first] == [False] * 3 + [True] * 3
    got += first[:3]
    want += want[:3]
    return got, [_rows(t, x, dims) for t in want]


def _coefficients(x, dims):
    """Random gradients of the five statistics, the kernel's coefficients
    for them and the gradient terms of stat_formulas.py they restate."""
    n = count(x.shape, dims)
    s = Sum.value(x, dims)
    m = Amax.value(x, dims)
    ties = Amax.ties(x, m, dims)
    mean = s / n
    s2, _ = CentralSums.value(x, mean, dims)
    gs, gm, g2, g3, g4 = (torch.randn_like(s) for _ in range(5))
    coefs = dict(gs=gs, r=gs - 3 * g3 * s2 / n, mx=m, share=gm / ties,
                 mean=mean, a2=2 * g2, a3=3 * g3, k4=4 * g4)
    terms = dict(r=Sum.input_grad(gs), mx=Amax.input_grad(m, dims, None, gm),
                 mean=CentralSums.input_grad(mean, s2, n, g2, g3),
                 k4=Pow4Sum.input_grad(g4))
    # Without g3 the central sums' broadcast part is not in r either.
    coefs_no3 = dict(coefs, r=gs, a3=torch.zeros_like(s))
    terms_no3 = dict(terms, mean=CentralSums.input_grad(mean, s2, n, g2,
                                                        None))
    return coefs, terms, coefs_no3, terms_no3


GROUPS = {'mx': ('mx', 'share'), 'mean': ('mean', 'a2', 'a3'),
          'k4': ('k4', )}


def _pair_moments_backward(k, x, dims, dtype):
    over_c = dims == C_DIMS
    got, want = [], []
    coefs, terms, coefs_no3, terms_no3 = _coefficients(x, dims)
    for groups in ((), ('mx', ), ('mean', ), ('k4', ), ('mx', 'mean', 'k4'),
                   ('mean', 'k4')):
        for c, t in ((coefs, terms), (coefs_no3, terms_no3)):
            args = {name: None for g in GROUPS.values() for name in g}
            for g in groups:
                args.update({name: _rows(c[name], x, dims).contiguous()
                             for name in GROUPS[g]})
            # The central sums' broadcast part is in r with their terms.
            r = c['r'] if 'mean' in groups else c['gs']
            got.append(k.moments_backward(
                x, over_c, _rows(r, x, dims).contiguous(),
                *[args[name] for name in ('mx', 'share', 'mean', 'a2', 'a3',
                                          'k4')]))
            want.append(assemble(t['r'] + sum((t[g] for g in groups), []),
                                 x.shape, x).contiguous())
    return got, want


def _ln_inputs(x):
    h, w = x.shape[2:]
    weight = torch.rand(h, w, dtype=x.dtype) + 0.5
    bias = torch.randn(h, w, dtype=x.dtype)
    return weight, bias


def _pair_ln_square_sum(k, x, dims, dtype):
    weight, bias = _ln_inputs(x)
    out, mean, rstd = k.ln_square_sum(x, weight, bias, 1e-5)
    d = x - x.mean(HW_DIMS, keepdim=True)
    var = d.square().mean(HW_DIMS, keepdim=True)
    want = _LayerNormSquareSum.reference(x, weight, bias, 1e-5)
    return ([out, mean, rstd],
            [want.reshape(x.shape[0], -1), _rows(x.mean(HW_DIMS), x, dims),
             _rows(torch.rsqrt(var + 1e-5), x, dims)])


def _pair_ln_square_sum_backward(k, x, dims, dtype):
    weight, bias = _ln_inputs(x)
    _, mean, rstd = k.ln_square_sum(x, weight, bias, 1e-5)
    xr, wr, br = (t.clone().requires_grad_() for t in (x, weight, bias))
    want = _LayerNormSquareSum.reference(xr, wr, br, 1e-5)
    g = torch.randn_like(want)
    want_grads = list(torch.autograd.grad(want, (xr, wr, br), g))
    want_grads[1:] = [t.reshape(-1) for t in want_grads[1:]]
    got = []
    for threads in (1, 2):  # one buffer of parameter sums per thread
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            got += k.ln_square_sum_backward(x, weight, bias, mean, rstd,
                                            g.contiguous(), True)
            gx, gw, gb = k.ln_square_sum_backward(
                x, weight, bias, mean, rstd, g.contiguous(), False)
        finally:
            torch.set_num_threads(before)
        assert gx is None
        got += [gw, gb]
    return got, (want_grads + want_grads[1:]) * 2


def _windows(x):
    """x as (M, H, W) maps and a whole window (kh, kw) of them: the largest
    of 5, 4, 3, 2, 1 that divides each side."""
    b, c, h, w = x.shape
    kh, kw = (next(k for k in (5, 4, 3, 2, 1) if n % k == 0) for n in (h, w))
    return x.reshape(b * c, h, w), kh, kw


def _pair_window_mean(k, x, dims, dtype):
    maps, kh, kw = _windows(x)
    return ([k.window_mean(maps, kh, kw)],
            [_WindowMean.reference(maps, kh, kw)])


def _pair_window_mean_backward(k, x, dims, dtype):
    maps, kh, kw = _windows(x)
    xr = maps.clone().requires_grad_()
    want = _WindowMean.reference(xr, kh, kw)
    g = torch.randn_like(want)
    return ([k.window_mean_backward(g, kh, kw)],
            [torch.autograd.grad(want, xr, g)[0]])


#: kernel -> a function (kernels, x, dims, dtype) -> (the kernel's outputs,
#: those of the Python definition it restates):
#:   moments                 Sum, Amax (and its ties), Pow4Sum, CentralSums
#:   moments_backward        their input_grad terms, assembled
#:   ln_square_sum           _LayerNormSquareSum.reference (squeeze.py)
#:   ln_square_sum_backward  autograd of that reference
#:   window_mean             _WindowMean.reference (F.avg_pool2d)
#:   window_mean_backward    autograd of that reference
KERNEL_PAIRS = {
    'moments': _pair_moments,
    'moments_backward': _pair_moments_backward,
    'ln_square_sum': _pair_ln_square_sum,
    'ln_square_sum_backward': _pair_ln_square_sum_backward,
    'window_mean': _pair_window_mean,
    'window_mean_backward': _pair_window_mean_backward,
}


def test_every_kernel_is_paired():
    k = built_stats_kernels()
    assert {n for n in dir(k) if not n.startswith('_')} == set(KERNEL_PAIRS)


@pytest.mark.parametrize('dtype', DTYPES, ids=str)
@pytest.mark.parametrize('shape', SHAPES, ids=str)
@pytest.mark.parametrize('kernel,dims', [
    ('moments', HW_DIMS), ('moments', C_DIMS),
    ('moments_backward', HW_DIMS), ('moments_backward', C_DIMS),
    ('ln_square_sum', HW_DIMS), ('ln_square_sum_backward', HW_DIMS),
    ('window_mean', HW_DIMS), ('window_mean_backward', HW_DIMS)])
def test_kernel_equals_the_python_definition(kernel, dims, shape, dtype):
    k = built_stats_kernels()
    x = _map(shape, dtype)
    got, want = KERNEL_PAIRS[kernel](k, x, dims, dtype)
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        torch.testing.assert_close(a, b, **_close(dtype), msg=f'output {i}')


def test_max_of_a_row_with_nan_is_nan():
    """As ``torch.amax``: a NaN anywhere in the reduced values."""
    k = built_stats_kernels()
    x = torch.randn(2, 3, 4, 5)
    x[0, 1, 2, 3] = float('nan')
    for over_c, dims in ((False, HW_DIMS), (True, C_DIMS)):
        got = k.moments(x, over_c, False)[1]
        want = x.amax(dims).reshape(2, -1)
        assert torch.equal(got.isnan(), want.isnan())
        torch.testing.assert_close(got, want, equal_nan=True)


def test_kernels_refuse_bad_input_by_name():
    k = built_stats_kernels()
    x = torch.randn(2, 3, 4, 5)
    with pytest.raises(RuntimeError, match='x must be contiguous'):
        k.moments(x.transpose(2, 3), False, True)
    with pytest.raises(RuntimeError, match='r has the wrong size'):
        k.moments_backward(x, False, torch.zeros(2, 4), None, None, None,
                           None, None, None)
    with pytest.raises(RuntimeError, match='mx needs share'):
        k.moments_backward(x, False, torch.zeros(2, 3), torch.zeros(2, 3),
                           None, None, None, None, None)
    with pytest.raises(RuntimeError, match='H \\* W elements'):
        k.ln_square_sum(x, torch.ones(4, 4), torch.zeros(4, 5), 1e-5)
    with pytest.raises(RuntimeError, match='must be multiples of the window'):
        k.window_mean(x[0], 3, 2)
    with pytest.raises(RuntimeError, match='must be \\(M, H, W\\)'):
        k.window_mean(x, 2, 5)
    with pytest.raises(RuntimeError, match='window at least 1 x 1'):
        k.window_mean_backward(x[0], 0, 1)


# --------------------------------------------------------------- dispatch
def test_kernels_apply_to_cpu_float_maps_in_eager_mode_only(monkeypatch):
    k = built_stats_kernels()
    for dtype in (torch.float32, torch.float64):
        assert compiled.stats_kernels_for(torch.zeros(1, dtype=dtype)) is k
    assert compiled.stats_kernels_for(torch.zeros(1).half()) is None
    assert compiled.stats_kernels_for(torch.zeros(1, device='meta')) is None
    monkeypatch.setattr(torch.compiler, 'is_compiling', lambda: True)
    assert compiled.stats_kernels_for(torch.zeros(1)) is None
    monkeypatch.undo()
    monkeypatch.setenv('SASE_MM_NO_EXT', '1')
    assert compiled.stats_kernels_for(torch.zeros(1)) is None


# ----------------------------------------------------------------- loader
@pytest.fixture
def source(tmp_path):
    path = tmp_path / 'src' / 'demo_kernels.cpp'
    path.parent.mkdir()
    path.write_text('// a source\n')
    return path


@pytest.fixture
def fake_load(monkeypatch, tmp_path):
    """``cpp_extension.load`` recording its calls; builds go to tmp."""
    import torch.utils.cpp_extension as ext
    calls = []

    def load(name, sources, **kwargs):
        calls.append((name, sources))
        return object()

    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('SASE_MM_NO_EXT', raising=False)
    monkeypatch.setattr(ext, 'load', load)
    return calls


def test_first_build_is_announced_then_loaded_once(source, fake_load,
                                                   capsys, tmp_path):
    ext = compiled.CompiledKernels('demo', str(source), 'demo CPU kernels')
    module = ext.load()
    assert module is not None and ext.load() is module
    assert len(fake_load) == 1
    err = capsys.readouterr().err
    assert 'compiling the demo CPU kernels' in err
    assert 'once' in err and 'about a minute' in err
    assert str(tmp_path / 'cache') in err and 'SASE_MM_NO_EXT=1' in err
    assert 'demo CPU kernels compiled in' in err
    (name, (copy, )), = fake_load
    assert name.startswith('demo_') and copy.endswith('demo_kernels.cpp')
    assert open(copy).read() == '// a source\n'  # built from a copy


def test_build_is_keyed_by_the_source(source, fake_load):
    compiled.CompiledKernels('demo', str(source), 'demo').load()
    source.write_text('// another source\n')
    compiled.CompiledKernels('demo', str(source), 'demo').load()
    assert fake_load[0][0] != fake_load[1][0]


def test_build_is_keyed_by_its_headers_copied_beside_the_source(
        source, fake_load):
    """A header the source includes by its bare name: a change of it is a
    new build, and the copy of the source compiles with it beside."""
    header = source.parent / 'shared.h'
    header.write_text('// a header\n')
    kernels = compiled.CompiledKernels('demo', str(source), 'demo',
                                       headers=[str(header)])
    kernels.load()
    (name, (copy, )), = fake_load
    beside = os.path.join(os.path.dirname(copy), 'shared.h')
    assert open(beside).read() == '// a header\n'
    header.write_text('// another header\n')
    compiled.CompiledKernels('demo', str(source), 'demo',
                             headers=[str(header)]).load()
    assert fake_load[1][0] != name


def test_kernel_sources_include_only_the_shared_header():
    """Both kernel sources include ``sase_cpu.h``, and it is what their
    loaders key and copy (a header they included and the loader did not
    copy would fail the build; one it did not key would not rebuild)."""
    from sase_mm.models.sase.fast import kernels as fused
    for kernels in (compiled.STATS, fused.FUSED):
        assert kernels.headers == (compiled.CPU_HEADER, )
        text = open(kernels.source).read()
        local = re.findall(r'#include "([^"]+)"', text)
        assert local == [os.path.basename(compiled.CPU_HEADER)]


def test_cached_build_is_silent(source, fake_load, monkeypatch, capsys):
    monkeypatch.setattr(compiled, 'is_built', lambda *a: True)
    assert compiled.CompiledKernels('demo', str(source), 'demo').load()
    assert capsys.readouterr().err == ''


def test_no_ext_skips_the_build(source, fake_load, monkeypatch):
    monkeypatch.setenv('SASE_MM_NO_EXT', '1')
    assert compiled.CompiledKernels('demo', str(source), 'demo').load() \
        is None
    assert fake_load == []


def test_failed_build_warns_and_falls_back(source, monkeypatch, tmp_path):
    import torch.utils.cpp_extension as ext

    def fail(*a, **k):
        raise OSError('no compiler')

    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv('SASE_MM_NO_EXT', raising=False)
    monkeypatch.setattr(ext, 'load', fail)
    kernels = compiled.CompiledKernels('demo', str(source), 'demo kernels',
                                       short='demo')
    with pytest.warns(UserWarning, match='the demo could not be built '
                      r'\(OSError: no compiler\); using the PyTorch'):
        assert kernels.load() is None
    assert isinstance(kernels.error, OSError)
    assert kernels.load() is None  # tried once, not again
