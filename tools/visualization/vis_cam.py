"""Grad-CAM of several models on the same images, as one grid (sase_mm).

The SASE paper (*Searching Architecture for Squeeze and Excitation
operations*, arXiv 2411.08333) shows what its attention looks at with one
figure: the Grad-CAM of ResNet-50, CBAM, ECA and SASE on the same images.
This tool draws that figure for any classifier config of this project (and
for detectors, the backbone's last stage): one row per image, one column per
model after the input image, each map overlaid on the image.

The CAMs come from the ``grad-cam`` package (``pytorch_grad_cam``, the
library mmpretrain's own ``vis_cam.py`` uses); every method it has is
selectable by name (``gradcam``, ``gradcam++``, ``xgradcam``, ``layercam``,
``eigencam``, ``scorecam``, ...).

* Target: by default each model's top-1 class for each image
  (``--target-category`` to fix one). For a detector, the score is the RPN's
  objectness (or a one-stage head's class scores) passed through a sigmoid
  and summed over anchors and positions, the expected number of object
  anchors, and the map is that of the backbone's last stage.
* Target layer: by default the backbone's last stage (the last module of
  the backbone that outputs a feature map, i.e. ``backbone.layer4`` for a
  ResNet, so the map includes the stage's attention blocks);
  ``--target-layers`` names others (``--preview-model`` lists the names).
* Images: each goes through the config's own test pipeline, as
  mmpretrain's ``vis_cam.py`` does (the config's loading and packing), with
  its resize and crop steps set to ``--img-size``: the short side resized
  and a centre crop (mmpretrain's ``ResizeEdge`` and ``CenterCrop``), so
  that every model sees, and the grid shows, the same square; then the
  model's own data preprocessor. ``--img sklearn`` stands for the two
  photographs scikit-learn ships (``sklearn.datasets.load_sample_images``:
  china.jpg, flower.jpg).
* Without ``--checkpoint`` the models keep their random initialisation
  (seeded by ``--seed``; a warning says so): the grid then shows the
  architectures' untrained response, not learned attention.

Usage::

    # the paper's comparison (plain, SE, CBAM, ECA, SASE ResNet-50 configs)
    python tools/visualization/vis_cam.py --img sklearn --out cam_grid.png
    python tools/visualization/vis_cam.py \\
        configs/imagenet/baselines/r50_plain_8xb16_in1k.py \\
        configs/imagenet/sase_r50_8xb16_in1k.py \\
        --checkpoint plain.pth sase.pth --img a.jpg b.jpg \\
        --method gradcam++ --out grid.png
    # the demo search's block in the SASE column (make demo writes it)
    python tools/visualization/vis_cam.py --img sklearn \\
        --genotype work_dirs/demo/genotype.json --out cam_grid.png
    # a detector: the backbone's last stage
    python tools/visualization/vis_cam.py \\
        configs/faster_rcnn/sase_r50_fpn_1x_coco.py --checkpoint det.pth \\
        --img a.jpg --out det_cam.png
"""
import argparse
import os
import os.path as osp
import warnings

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config, DictAction

import sase_mm  # noqa: F401  sase_mm's types and configs, before parsing
from sase_mm.apis.tool_models import (ClassifierLogits, build_config_model,
                                      is_detector)

#: The checkout whose configs are the default columns.
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: The paper's figure: ResNet-50 without attention, SE, CBAM, ECA and SASE.
DEFAULT_CONFIGS = [
    'configs/imagenet/baselines/r50_plain_8xb16_in1k.py',
    'configs/imagenet/baselines/r50_se_8xb16_in1k.py',
    'configs/imagenet/baselines/r50_cbam_8xb16_in1k.py',
    'configs/imagenet/baselines/r50_eca_8xb16_in1k.py',
    'configs/imagenet/sase_r50_8xb16_in1k.py',
]
SKLEARN_IMAGES = 'sklearn'
#: The loading and packing of configs without a test pipeline of image
#: files (the search's in-memory sets), mmpretrain's.
DEFAULT_PIPELINE = [dict(type='mmpretrain.LoadImageFromFile'),
                    dict(type='mmpretrain.PackInputs')]
#: Test-pipeline steps that set the image's size: replaced by --img-size.
GEOMETRY_STEPS = ('Resize', 'Crop', 'Pad')
HEADER = 28  # pixels of the title band
PAD = 4  # pixels between cells


def _cam_module():
    try:
        import pytorch_grad_cam
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('vis_cam.py needs the grad-cam package: '
                          '`pip install grad-cam` (requirements/tests.txt)')
    return pytorch_grad_cam


def cam_methods() -> dict:
    """Method name (lower case) -> pytorch_grad_cam class, with mmpretrain's
    alias ``gradcam++``."""
    cam = _cam_module()

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    methods = {c.__name__.lower(): c for c in subclasses(cam.base_cam.BaseCAM)}
    methods['gradcam++'] = cam.GradCAMPlusPlus
    return dict(sorted(methods.items()))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Grad-CAM grid: one row per image, one column per model '
        '(the SASE paper\'s comparison figure)')
    parser.add_argument(
        'configs', nargs='*', metavar='CONFIG',
        help='classifier or detector configs, one column each (default: '
        'the plain, SE, CBAM, ECA and SASE ResNet-50 ImageNet configs)')
    parser.add_argument(
        '--img', nargs='+', required=True,
        help=f'image files, one row each; `{SKLEARN_IMAGES}` stands for '
        'scikit-learn\'s two sample photographs')
    parser.add_argument(
        '--checkpoint', nargs='+', default=None,
        help='one checkpoint per config (`none` keeps that model\'s random '
        'initialisation); default: all random')
    parser.add_argument(
        '--target-layers', nargs='+', default=None,
        help='module names to take the CAM of, in every model (default: '
        'the backbone\'s last stage); see --preview-model')
    parser.add_argument(
        '--method', default='gradcam',
        help='CAM method, by name (case-insensitive): gradcam, gradcam++, '
        'xgradcam, layercam, eigencam, scorecam, ...')
    parser.add_argument(
        '--target-category', type=int, nargs='+', default=None,
        help='class index per image (or one for all); default: each '
        'model\'s top-1 prediction')
    parser.add_argument('--img-size', type=int, default=224,
                        help='short-side resize and centre crop (224)')
    parser.add_argument(
        '--genotype', default=None,
        help='a searched genotype (a search\'s genotype.json / .py) for the '
        'SASE columns only (e.g. work_dirs/demo/genotype.json)')
    parser.add_argument('--labels', nargs='+', default=None,
                        help='column titles (default: from the configs)')
    parser.add_argument('--out', required=True, help='the PNG to write')
    parser.add_argument(
        '--eigen-smooth', action='store_true',
        help='first principal component of cam_weights * activations')
    parser.add_argument('--aug-smooth', action='store_true',
                        help='test-time augmentation (ttach)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the random initialisation (models '
                        'without a checkpoint)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda:N')
    parser.add_argument('--preview-model', action='store_true',
                        help='print the module names of each model and exit')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of every config, `key=value` (e.g. '
        'model.backbone.depth=101)')
    args = parser.parse_args(argv)
    if args.method.lower() not in cam_methods():
        parser.error(f'unknown --method {args.method!r}; valid: '
                     f'{", ".join(cam_methods())}')
    return args


# ---------------------------------------------------------------- images
def sample_image_paths(out_dir: str) -> list:
    """Writes scikit-learn's sample photographs to ``out_dir`` as PNGs."""
    import cv2
    from sklearn.datasets import load_sample_images
    data = load_sample_images()
    paths = []
    for name, img in zip(data.filenames, data.images):
        path = osp.join(out_dir, osp.splitext(osp.basename(name))[0] + '.png')
        cv2.imwrite(path, np.ascontiguousarray(img[..., ::-1]))
        paths.append(path)
    return paths


def test_pipeline(cfg: Config, size: int) -> list:
    """The config's test pipeline (``test_dataloader.dataset.pipeline``),
    its resize, crop and pad steps replaced by a short-side resize to
    ``size`` and a ``size`` x ``size`` centre crop (mmpretrain's
    ``ResizeEdge`` and ``CenterCrop``; bicubic)."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    steps = list(dataset.get('pipeline') or DEFAULT_PIPELINE)
    geometry = [dict(type='mmpretrain.ResizeEdge', scale=size, edge='short',
                     interpolation='bicubic'),
                dict(type='mmpretrain.CenterCrop', crop_size=size)]
    out = []
    for step in steps:
        name = str(step['type']).split('.')[-1]
        if any(word in name for word in GEOMETRY_STEPS):
            out += geometry
            geometry = []
        else:
            out.append(dict(step))
    if geometry:  # after the loading
        out[1:1] = geometry
    return out


def load_images(cfg: Config, paths, size: int):
    """The images through :func:`test_pipeline`.

    Returns:
        (the packed results, one per image, for the data preprocessor;
        the images as (size, size, 3) uint8 RGB arrays, as shown).
    """
    from mmengine.dataset import Compose
    pipeline = Compose(test_pipeline(cfg, size))
    packed, shown = [], []
    for path in paths:
        if not osp.isfile(path):
            raise FileNotFoundError(f'--img: no such file {path!r}')
        try:
            data = pipeline(dict(img_path=path))
        except Exception as err:  # mmcv's loader asserts a decoded image
            raise ValueError(f'--img: {path!r} is not an image OpenCV '
                             f'reads') from err
        packed.append(data)
        # The pipeline keeps OpenCV's BGR; the preprocessor makes it RGB.
        shown.append(np.ascontiguousarray(
            data['inputs'].permute(1, 2, 0).numpy()[..., ::-1]))
    return packed, shown


def to_inputs(model: nn.Module, packed) -> torch.Tensor:
    """A (N, 3, S, S) float batch, normalised as the model expects: its
    data preprocessor when that normalises (mmpretrain / mmdet configs),
    else RGB in [0, 1] (the search configs' digits)."""
    from mmengine.dataset import pseudo_collate
    pre = getattr(model, 'data_preprocessor', None)
    if pre is not None and hasattr(pre, 'mean'):
        h, w = packed[0]['inputs'].shape[-2:]
        with torch.no_grad():
            x = pre(pseudo_collate(packed), False)['inputs'].float()
        return x[..., :h, :w]  # without mmdet's padding to 32
    rgb = torch.stack([p['inputs'] for p in packed]).flip(1).float() / 255.
    return rgb.to(next(model.parameters()).device)


# ---------------------------------------------------------------- models
class DetectorObjectness(nn.Module):
    """A detector as a one-score 'classifier' (B, 1): sigmoid of the RPN's
    objectness (or of a one-stage head's class scores), summed over anchors
    and positions of every level."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        feats = self.model.extract_feat(x)
        head = getattr(self.model, 'rpn_head', None) or self.model.bbox_head
        cls_scores = head(feats)[0]
        score = sum(s.sigmoid().flatten(1).sum(1) for s in cls_scores)
        return score.unsqueeze(1)


def _is_sase(attn) -> bool:
    return isinstance(attn, dict) and str(attn.get('type', '')).split(
        '.')[-1] == 'SASE'


def build_model(config: str, checkpoint, cfg_options, device: str, seed: int,
                genotype=None):
    """(model in eval mode, its Config). ``checkpoint`` None: the random
    initialisation of the modules' constructors (seeded), not mmengine's
    ``init_weights`` (a detector's would load its ImageNet checkpoint; a
    ResNet's zero-inits every residual branch, so every attention module
    would see zeros)."""
    from mmengine.runner import load_checkpoint
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    backbone = cfg.model.get('backbone', {})
    if genotype is not None and _is_sase(backbone.get('attn_cfg')):
        backbone.attn_cfg.genotype = genotype
    model = build_config_model(cfg, seed)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return model.to(device).eval(), cfg


def column_label(cfg: Config, config: str) -> str:
    """'SASE', 'SE', 'CBAM', ... or 'ResNet-50' without attention."""
    backbone = cfg.model.get('backbone', cfg.model.get('supernet', {}))
    attn = backbone.get('attn_cfg', 'missing')
    if attn == 'missing' or not isinstance(attn, (dict, type(None))):
        return osp.splitext(osp.basename(config))[0]
    if attn is None:
        return f'ResNet-{backbone.get("depth", "")}'.rstrip('-')
    name = str(attn.get('type', '?')).split('.')[-1]
    if name == 'SASE' and attn.get('genotype') is not None:
        return 'SASE (searched)'
    return name


def default_target_layer(model: nn.Module, scorer: nn.Module,
                         inputs: torch.Tensor):
    """(name, module): the last module of the backbone (the model itself if
    it has none) to finish with a 4-D output, found by running the model
    once with forward hooks."""
    root = getattr(model, 'backbone', None)
    prefix = 'backbone.'
    if root is None:
        root, prefix = model, ''
    done = []
    handles = [m.register_forward_hook(
        lambda mod, inp, out, name=name: done.append(name)
        if isinstance(out, torch.Tensor) and out.dim() == 4 else None)
        for name, m in root.named_modules() if name]
    try:
        with torch.no_grad():
            scorer(inputs[:1])
    finally:
        for h in handles:
            h.remove()
    if not done:
        raise ValueError(f'{type(model).__name__}: no module of its backbone '
                         f'outputs a feature map; pass --target-layers')
    name = done[-1]
    return prefix + name, root.get_submodule(name)


def get_layer(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        raise ValueError(f'--target-layers: no module {name!r} in '
                         f'{type(model).__name__}; e.g. '
                         f'{", ".join(names[-8:])} (--preview-model lists '
                         f'all)') from None


def compute_cams(scorer, layers, inputs, method: str, targets,
                 eigen_smooth=False, aug_smooth=False) -> np.ndarray:
    """(N, S, S) maps in [0, 1] from pytorch_grad_cam."""
    cam_cls = cam_methods()[method.lower()]
    with cam_cls(model=scorer, target_layers=layers) as cam:
        return cam(input_tensor=inputs, targets=targets,
                   eigen_smooth=eigen_smooth, aug_smooth=aug_smooth)


# ------------------------------------------------------------------ grid
def compose_grid(images_rgb, overlays, labels) -> np.ndarray:
    """RGB uint8 grid: a title band, then one row per image (the input,
    then one overlay per model).

    Args:
        images_rgb: N arrays (S, S, 3) uint8.
        overlays: N lists of M arrays (S, S, 3) uint8.
        labels: M column titles.

    Returns:
        (HEADER + N * (S + PAD) + PAD, (M + 1) * (S + PAD) + PAD, 3) uint8.
    """
    import cv2
    n, m = len(images_rgb), len(labels)
    s = images_rgb[0].shape[0]
    grid = np.full((HEADER + n * (s + PAD) + PAD, (m + 1) * (s + PAD) + PAD,
                    3), 255, np.uint8)
    titles = ['input'] + list(labels)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for j, title in enumerate(titles):
        scale = 0.55
        while scale > 0.25 and cv2.getTextSize(title, font, scale,
                                               1)[0][0] > s:
            scale -= 0.05
        (tw, th), _ = cv2.getTextSize(title, font, scale, 1)
        x0 = PAD + j * (s + PAD) + max(0, (s - tw) // 2)
        cv2.putText(grid, title, (x0, (HEADER + th) // 2), font, scale,
                    (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(n):
        y0 = HEADER + i * (s + PAD)
        for j, cell in enumerate([images_rgb[i]] + list(overlays[i])):
            x0 = PAD + j * (s + PAD)
            grid[y0:y0 + s, x0:x0 + s] = cell
    return grid


def _targets(categories, n_images):
    if categories is None:
        return None
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    if len(categories) == 1:
        categories = categories * n_images
    if len(categories) != n_images:
        raise ValueError(f'--target-category: give one class or one per '
                         f'image ({n_images}), got {len(categories)}')
    return [ClassifierOutputTarget(c) for c in categories]


def model_column(config: str, ckpt, paths, targets, args, title=None):
    """One column: the model of ``config``, its inputs and CAMs, titled
    ``title`` (default: from the config, :func:`column_label`).

    Returns:
        ``dict(shown, maps, names, prediction, label)`` (``shown``: the
        images as its pipeline gives them, RGB; ``maps``: (N, S, S) in
        [0, 1]), or None with ``--preview-model`` (its module names are
        printed instead).
    """
    model, cfg = build_model(config, ckpt, args.cfg_options, args.device,
                             args.seed, args.genotype)
    if args.preview_model:
        print(f'==> {config}')
        print('\n'.join(n for n, _ in model.named_modules() if n))
        return None
    if ckpt is None:
        warnings.warn(f'{config}: no checkpoint, random weights (seed '
                      f'{args.seed}): the map shows the untrained '
                      f'architecture, not learned attention')
    detector = is_detector(model)
    scorer = (DetectorObjectness if detector else ClassifierLogits)(model)
    packed, shown = load_images(cfg, paths, args.img_size)
    inputs = to_inputs(model, packed)
    if args.target_layers:
        names = list(args.target_layers)
        layers = [get_layer(model, n) for n in names]
    else:
        name, layer = default_target_layer(model, scorer, inputs)
        names, layers = [name], [layer]
    with torch.no_grad():
        prediction = scorer(inputs).argmax(-1).tolist()
    maps = compute_cams(scorer, layers, inputs, args.method,
                        None if detector else targets, args.eigen_smooth,
                        args.aug_smooth)
    label = column_label(cfg, config)
    if detector:
        label = f'{type(model).__name__} + {label}'
    label = title or label
    what = 'objectness' if detector else f'classes {prediction} (top-1)'
    print(f'{label}: {args.method} of {", ".join(names)} for {what}',
          flush=True)
    zero = [i for i in range(len(maps)) if not maps[i].max() > 0]
    if zero:
        print(f'  note: the map of image(s) {zero} is 0 everywhere (no '
              f'position raises the score; common with random weights): '
              f'--method gradcam++ or eigencam show more', flush=True)
    return dict(shown=shown, maps=maps, names=names, prediction=prediction,
                label=label)


def main(argv=None):
    """Writes the grid; returns ``dict(grid, cams, labels, target_layers,
    predictions, out)`` (``cams``: (images, models, S, S) in [0, 1])."""
    import tempfile

    import cv2
    from pytorch_grad_cam.utils.image import show_cam_on_image
    args = parse_args(argv)
    configs = args.configs or [osp.join(REPO, c) for c in DEFAULT_CONFIGS]
    ckpts = args.checkpoint or ['none'] * len(configs)
    if len(ckpts) != len(configs):
        raise ValueError(f'--checkpoint: one per config ({len(configs)}), '
                         f'got {len(ckpts)}')
    ckpts = [None if c.lower() == 'none' else c for c in ckpts]
    if args.labels is not None and len(args.labels) != len(configs):
        raise ValueError(f'--labels: one per config ({len(configs)}), got '
                         f'{len(args.labels)}')

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for p in args.img:
            paths += sample_image_paths(tmp) if p == SKLEARN_IMAGES else [p]
        for p in paths:  # before any model is built
            if not osp.isfile(p):
                raise FileNotFoundError(f'--img: no such file {p!r}')
        targets = _targets(args.target_category, len(paths))
        titles = args.labels or [None] * len(configs)
        columns = [model_column(config, ckpt, paths, targets, args, title)
                   for config, ckpt, title in zip(configs, ckpts, titles)]
    if args.preview_model:
        return None
    rgb = columns[0]['shown']  # each column's pipeline gives the same
    labels = [c['label'] for c in columns]
    # Same titles twice (two configs with one attention): add the file.
    for j, lab in enumerate(labels):
        if labels.count(lab) > 1 and not args.labels:
            rel = osp.splitext(osp.relpath(configs[j], REPO))[0]
            labels[j] = f'{lab} ({rel})'

    cams = np.stack([c['maps'] for c in columns], axis=1)  # (N, M, S, S)
    overlays = [[show_cam_on_image(img.astype(np.float32) / 255.,
                                   cams[i, j], use_rgb=True)
                 for j in range(cams.shape[1])]
                for i, img in enumerate(rgb)]
    grid = compose_grid(rgb, overlays, labels)
    out_dir = osp.dirname(osp.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 9] if args.out.lower().endswith(
        '.png') else []
    if not cv2.imwrite(args.out, np.ascontiguousarray(grid[..., ::-1]),
                       params):
        raise OSError(f'could not write {args.out!r}')
    print(f'{len(rgb)} image(s) x {len(labels)} model(s) -> {args.out}')
    return dict(grid=grid, cams=cams, labels=labels,
                target_layers=[c['names'] for c in columns],
                predictions=[c['prediction'] for c in columns],
                out=args.out)


if __name__ == '__main__':
    main()
