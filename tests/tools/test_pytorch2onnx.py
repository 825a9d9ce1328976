"""tools/deployment/pytorch2onnx.py: SASE-ResNet classifiers and detector
backbones through ONNX, checked with onnxruntime against PyTorch at two
input sizes (SASE, arXiv 2411.08333)."""
import numpy as np
import pytest
import torch

from data_utils.tool_runs import config_path, help_text, load_tool

ort = pytest.importorskip('onnxruntime')
tool = load_tool('deployment/pytorch2onnx')

IMAGENET = config_path('imagenet/sase_r50_8xb16_in1k.py')
FASTER = config_path('faster_rcnn/sase_r50_fpn_1x_coco.py')
RTOL = 1e-4


def _build(config, options=None):
    """The config's model, randomly initialised (as the tool builds it)."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    if options:
        cfg.merge_from_dict(options)
    module, names, kind, model = tool.build_export_model(cfg, config, 'none',
                                                        seed=1)
    return module, names, kind, model


def _rel_errors(path, module, shapes):
    """onnxruntime vs PyTorch, in the test (not the tool's --verify)."""
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    errs = []
    for shape in shapes:
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = module(x)
        ref = list(ref) if isinstance(ref, (tuple, list)) else [ref]
        got = sess.run(None, {'input': x.numpy()})
        assert [g.shape for g in got] == [tuple(r.shape) for r in ref]
        errs.append(max(float(np.abs(g - r.numpy()).max() /
                              np.abs(r.numpy()).max())
                        for g, r in zip(got, ref)))
    return errs


def _save(model, path):
    torch.save({'state_dict': model.state_dict()}, path)
    return str(path)


def test_classifier_exports_and_matches_at_two_sizes(tmp_path, capsys):
    _, _, _, model = _build(IMAGENET)
    ckpt = _save(model, tmp_path / 'sase_r50.pth')
    out = str(tmp_path / 'sase_r50.onnx')
    res = tool.main([IMAGENET, ckpt, out, '--shape', '64', '64', '--verify',
                     '--verify-shape', '96', '80'])
    assert res['kind'] == 'classifier' and res['output_names'] == ['logits']
    assert set(res['errors']) == {'1x64x64', '2x96x80'}
    assert max(res['errors'].values()) <= RTOL
    assert 'max relative error' in capsys.readouterr().out

    import onnx
    proto = onnx.load(out)
    assert proto.opset_import[0].version == 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta['kind'] == 'classifier' and meta['mean'].startswith('123.675')
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == [
        'batch', 3, 'height', 'width']
    # The checkpoint's weights, independently of --verify.
    model.load_state_dict(torch.load(ckpt)['state_dict'])
    module = tool.ClassifierLogits(model).eval()
    errs = _rel_errors(out, module, [(1, 3, 64, 64), (3, 3, 72, 104)])
    assert max(errs) <= RTOL, errs


def test_detector_backbone_exports(tmp_path):
    _, names, kind, model = _build(FASTER)
    assert kind == 'backbone' and names == ['feat0', 'feat1', 'feat2',
                                            'feat3']
    ckpt = _save(model, tmp_path / 'det.pth')  # a whole detector's keys
    out = str(tmp_path / 'backbone.onnx')
    res = tool.main([FASTER, ckpt, out, '--shape', '64', '96', '--verify',
                     '--opset-version', '13'])
    assert max(res['errors'].values()) <= RTOL
    model.backbone.load_state_dict(
        {k[len('backbone.'):]: v for k, v in
         torch.load(ckpt)['state_dict'].items() if k.startswith('backbone.')})
    errs = _rel_errors(out, model.backbone.eval(),
                       [(1, 3, 64, 96), (2, 3, 96, 64)])
    assert max(errs) <= RTOL, errs


def _genotypes():
    """Seven genotypes that together use every operation of every edge."""
    from sase_mm.models.sase import EDGES
    return [[e.op_set.names[k] for e in EDGES] for k in range(7)]


def test_any_genotype_exports(tmp_path):
    """Every operation, at two sizes and two batch sizes (through a block
    stack, quicker than a ResNet each)."""
    from sase_mm.models.sase import SASE

    for i, genotype in enumerate(_genotypes()):
        torch.manual_seed(i)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.BatchNorm2d(32),
            SASE(32, genotype=genotype, spatial_size=8),
            torch.nn.Conv2d(32, 32, 3, stride=2, padding=1),
            SASE(32, genotype=genotype)).eval()
        # Non-trivial BN statistics and affine parameters.
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2)
                if m.affine:
                    m.weight.data.uniform_(0.5, 1.5)
        path = str(tmp_path / f'g{i}.onnx')
        tool.export(net, ['out'], path, (16, 16))
        errs = _rel_errors(path, net, [(2, 3, 16, 16), (3, 3, 24, 40),
                                       (1, 3, 2, 2)])
        assert max(errs) <= RTOL, (genotype, errs)


def test_searched_genotype_through_the_tool(tmp_path):
    """A genotype in the config (as a search's genotype.json goes in)."""
    out = str(tmp_path / 'g.onnx')
    res = tool.main([
        IMAGENET, 'none', out, '--shape', '64', '64', '--verify',
        '--backbone-only', '--cfg-options', 'model.backbone.depth=18',
        "model.backbone.attn_cfg.genotype=[gap_std,conv1d_k5,fc,l2_norm,"
        "cov_pool,sep_conv_5]"])
    assert res['kind'] == 'backbone'
    assert max(res['errors'].values()) <= RTOL


def test_exportable_forms_equal_the_layers():
    """The layer flag the tool sets changes how, never what, the blocks
    compute (every operation of every edge, the paper's block)."""
    from sase_mm.models.layers.config import exportable, is_exportable
    from sase_mm.models.sase import SASE
    for genotype in _genotypes() + [None]:
        block = SASE(16, genotype=genotype).eval()
        for shape in [(2, 16, 7, 7), (3, 16, 8, 12), (1, 16, 1, 1)]:
            x = torch.randn(*shape)
            with torch.no_grad():
                ref = block(x)
                with exportable():
                    got = block(x)
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    assert not is_exportable()


class _Probe(torch.nn.Module):
    """Records the layer flag each time it runs."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)
        self.seen = []

    def forward(self, x):
        from sase_mm.models.layers.config import is_exportable
        self.seen.append(is_exportable())
        return self.conv(x)


def test_export_sets_the_layer_flag_only_while_exporting(tmp_path):
    """The tool patches nothing of sase_mm: it sets the layers' export
    flag around the export, and --verify runs the layers' own forms."""
    from sase_mm.models.layers.config import is_exportable
    probe = _Probe()
    path = str(tmp_path / 'probe.onnx')
    tool.export(probe, ['out'], path, (8, 8))
    assert probe.seen and all(probe.seen)
    assert not is_exportable()
    probe.seen.clear()
    tool.verify(probe, path, [(1, 8, 8)])
    assert probe.seen == [False]


def _library_state():
    """Every attribute of sase_mm's model modules and of their classes."""
    import inspect
    import sys
    state = {}
    for name, mod in list(sys.modules.items()):
        if not name.startswith('sase_mm.models') or mod is None:
            continue
        for attr, value in vars(mod).items():
            state[(name, attr)] = value
            if inspect.isclass(value) and value.__module__ == name:
                for k, v in vars(value).items():
                    state[(name, attr, k)] = v
    return state


def test_export_patches_nothing_of_sase_mm(tmp_path):
    """While torch.onnx.export runs, every function and class attribute of
    sase_mm's models is the one it was: the layers choose their plain
    forms by the flag."""
    from sase_mm.models.sase import SASE
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 1),
                              SASE(16, genotype=_genotypes()[1])).eval()
    before = _library_state()
    seen = {}

    def spy(*args, **kwargs):
        seen.update(_library_state())
        return export_onnx(*args, **kwargs)

    export_onnx = torch.onnx.export
    torch.onnx.export = spy
    try:
        tool.export(net, ['out'], str(tmp_path / 'n.onnx'), (8, 8))
    finally:
        torch.onnx.export = export_onnx
    changed = [k for k in before if seen.get(k, before[k]) is not before[k]]
    # During the export only the flag differs; nothing is replaced.
    assert seen and changed == [('sase_mm.models.layers.config',
                                 '_EXPORTABLE')], changed[:5]


def test_checkpoint_goes_through_the_safe_loader(tmp_path):
    """mmengine reads the checkpoint, through sase_mm's loader: a crafted
    file is refused and runs nothing (docs/security.md)."""
    import os

    from data_utils import payloads

    from sase_mm.utils import UntrustedCheckpointError
    marker = str(tmp_path / 'ran')
    ckpt = payloads.reduce_system_checkpoint(str(tmp_path / 'evil.pth'),
                                             marker)
    for config in (IMAGENET, FASTER):  # whole model, and the prefix path
        with pytest.raises(UntrustedCheckpointError):
            tool.main([config, ckpt, str(tmp_path / 'x.onnx')])
    assert not os.path.exists(marker)
    assert not (tmp_path / 'x.onnx').exists()


def test_ddp_keys_and_missing_prefix(tmp_path):
    """A checkpoint saved from a DDP wrapper (``module.`` keys) loads; a
    detector checkpoint without backbone keys is refused by name."""
    _, _, _, model = _build(IMAGENET, {'model.backbone.depth': 18})
    ckpt = str(tmp_path / 'ddp.pth')
    torch.save({'state_dict': {'module.' + k: v for k, v in
                               model.state_dict().items()}}, ckpt)
    target = _build(IMAGENET, {'model.backbone.depth': 18})[3]
    tool.load_weights(target, ckpt)
    for k, v in model.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k
    other = str(tmp_path / 'neck_only.pth')
    torch.save({'state_dict': {'neck.w': torch.zeros(1)}}, other)
    with pytest.raises(tool.ExportError, match='no `backbone.\\*` keys'):
        tool.load_weights(target.backbone, other, 'backbone.')


def test_search_supernet_is_refused(tmp_path):
    with pytest.raises(tool.ExportError, match='search supernet') as err:
        tool.main([config_path('search/sase_r8_digits.py'), 'none',
                   str(tmp_path / 's.onnx')])
    assert 'genotype' in str(err.value)
    assert not (tmp_path / 's.onnx').exists()


def test_wrong_checkpoint_is_refused(tmp_path):
    ckpt = str(tmp_path / 'other.pth')
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(1)}},
               ckpt)
    with pytest.raises(tool.ExportError,
                       match='does not fit.*size mismatch for '
                       'backbone.conv1.weight'):
        tool.main([IMAGENET, ckpt, str(tmp_path / 'x.onnx')])
    missing = str(tmp_path / 'missing.pth')
    _, _, _, model = _build(IMAGENET)
    state = model.state_dict()
    state.pop('head.fc.bias')
    state['extra.w'] = torch.zeros(1)
    torch.save({'state_dict': state}, missing)
    with pytest.raises(tool.ExportError,
                       match=r'1 missing key\(s\) \[head.fc.bias\], 1 '
                       r'unexpected \[extra.w\]'):
        tool.main([IMAGENET, missing, str(tmp_path / 'x.onnx')])
    torch.save([1, 2], missing)
    with pytest.raises(tool.ExportError, match='holds no state_dict'):
        tool.main([IMAGENET, missing, str(tmp_path / 'x.onnx')])


def test_help(capsys):
    out = help_text(tool, capsys)
    for opt in ('--shape', '--opset-version', '--dynamic-export', '--verify'):
        assert opt in out
