"""Helpers for running sase_mm's tools in tests: import a tool as a module,
locate configs, and shrink the real configs to the tiny datasets with
``--cfg-options`` (SASE, arXiv 2411.08333, downstream experiments)."""
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool(rel_path: str):
    """Imports ``tools/<rel_path>.py`` as a module (tools is no package)."""
    from sase_mm.apis.tool_args import load_tool as load
    return load(rel_path)


def config_path(rel: str) -> str:
    return osp.join(REPO, 'configs', rel)


def pipeline_index(pipeline, type_name: str) -> int:
    """Index of the transform of type ``type_name`` in a pipeline."""
    types = [str(t['type']).split('.')[-1] for t in pipeline]
    assert type_name in types, (type_name, types)
    return types.index(type_name)


def imagenet_options(cfg, data_root: str, size: int = 64):
    """--cfg-options shrinking an ImageNet config to the tiny set."""
    opts = {}
    train_pipe = cfg.train_dataloader.dataset.pipeline
    test_pipe = cfg.test_dataloader.dataset.pipeline
    crop = pipeline_index(train_pipe, 'RandomResizedCrop')
    opts[f'train_dataloader.dataset.pipeline.{crop}.scale'] = size
    for loader, pipe in (('val_dataloader', test_pipe),
                         ('test_dataloader', test_pipe)):
        edge = pipeline_index(pipe, 'ResizeEdge')
        centre = pipeline_index(pipe, 'CenterCrop')
        opts[f'{loader}.dataset.pipeline.{edge}.scale'] = size + 8
        opts[f'{loader}.dataset.pipeline.{centre}.crop_size'] = size
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts.update({f'{loader}.dataset.data_root': data_root,
                     f'{loader}.batch_size': 2,
                     f'{loader}.num_workers': 0,
                     f'{loader}.persistent_workers': False})
    opts.update({'train_cfg.max_epochs': 1, 'default_hooks.logger.interval':
                 1, 'randomness.seed': 0})
    return opts


def as_argv(opts: dict):
    """dict -> ['--cfg-options', 'k=v', ...] as a shell would pass it."""
    def fmt(v):
        if isinstance(v, (list, tuple)):
            return '(' + ','.join(fmt(x) for x in v) + ')'
        return str(v)
    return ['--cfg-options'] + [f'{k}={fmt(v)}' for k, v in opts.items()]


def coco_options(cfg, data_root: str, scale=(160, 128)):
    """--cfg-options shrinking an mmdet COCO config to the tiny set.

    Keeps the config's pipelines and model; changes paths, the resize scale,
    batch sizes and epochs, and sets the test score threshold to 0 so an
    (almost) untrained detector still outputs boxes for CocoMetric."""
    root = data_root.rstrip('/') + '/'
    opts = {}
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        pipe = cfg[loader].dataset.pipeline
        opts[f'{loader}.dataset.pipeline.{pipeline_index(pipe, "Resize")}'
             '.scale'] = scale
        opts.update({f'{loader}.dataset.data_root': root,
                     f'{loader}.batch_size': 2 if loader.startswith('train')
                     else 1,
                     f'{loader}.num_workers': 0,
                     f'{loader}.persistent_workers': False})
    for ev, split in (('val_evaluator', 'val2017'),
                      ('test_evaluator', 'val2017')):
        opts[f'{ev}.ann_file'] = f'{root}annotations/instances_{split}.json'
    opts.update({
        'train_cfg.max_epochs': 1,
        'default_hooks.logger.interval': 1,
        'randomness.seed': 0,
        'model.test_cfg.rcnn.score_thr': 0.0,
        # Fewer proposals and detections: CPU time (the mask head costs
        # ~0.5 GFLOPs per detection).
        'model.test_cfg.rpn.nms_pre': 100,
        'model.test_cfg.rpn.max_per_img': 50,
        'model.test_cfg.rcnn.max_per_img': 5,
        'model.train_cfg.rpn_proposal.nms_pre': 100,
        'model.train_cfg.rpn_proposal.max_per_img': 50,
        'model.train_cfg.rcnn.sampler.num': 32,
    })
    return opts


# configs/search/sase_r8_digits.py shrunk to seconds (--cfg-options).
TINY_DIGITS = [
    'model.supernet.depth=8', 'model.supernet.base_channels=8',
    'model.supernet.input_size=8', 'train_cfg.max_epochs=1',
    'default_hooks.logger.interval=1', 'param_scheduler.weights.0.T_max=1',
    'param_scheduler.weights.0.end=1']
for _loader in ('train_dataloader', 'val_dataloader',
                'train_cfg.search_dataloader'):
    TINY_DIGITS += [f'{_loader}.batch_size=8',
                    f'{_loader}.num_batch_per_epoch=2',
                    f'{_loader}.dataset.size=8']


def help_text(tool, capsys, argv=('--help', )) -> str:
    """A tool's ``--help`` output, checking that it exits 0 with a usage
    line."""
    import pytest
    with pytest.raises(SystemExit) as err:
        tool.parse_args(list(argv))
    assert err.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith('usage:')
    return out
