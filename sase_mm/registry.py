"""sase_mm's registries: children of mmengine's roots, scope ``sase_mm``.

Being children of the roots (not of mmdet's or mmpretrain's registries) makes
``type='sase_mm.X'`` resolve from any OpenMMLab scope: under
``default_scope='mmdet'`` or ``'mmpretrain'``, inside mmcv's
``build_plugin_layer`` (which looks plugins up in the root ``MODELS``), and
with ``custom_imports=dict(imports=['sase_mm'])``. ``locations`` lets mmengine
import the modules that register into each registry on first lookup, so
``import sase_mm`` stays light (no mmdet / mmpretrain until one of their
modules is needed).
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='sase_mm',
                  locations=['sase_mm.models.classifiers',
                             'sase_mm.models.sase',
                             'sase_mm.models.attention_zoo',
                             'sase_mm.models.backbones',
                             'sase_mm.models.search',
                             'sase_mm.models.utils'])
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, scope='sase_mm',
                 locations=['sase_mm.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='sase_mm',
                 locations=['sase_mm.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope='sase_mm',
    locations=['sase_mm.engine'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='sase_mm',
                    locations=['sase_mm.datasets'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='sase_mm',
                   locations=['sase_mm.evaluation'])
