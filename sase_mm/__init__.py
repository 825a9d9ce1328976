"""sase_mm: SASE (arXiv 2411.08333) for OpenMMLab.

Two sides:

* the blocks (``sase_mm.models.sase``: ``SASE``, ``SASESearch``, the
  genotype), their layers and the attention zoo are plain PyTorch: they
  import with torch and numpy only;
* the OpenMMLab side, set up here when mmengine is installed: sase_mm's
  registries (children of mmengine's under the scope ``sase_mm``; the
  modules that register into them are imported on first lookup, so
  ``type='sase_mm.X'`` resolves from any mm scope and through
  ``custom_imports=dict(imports=['sase_mm'])``), mmengine's checkpoint
  loader replaced by sase_mm's safe one (``utils/safe_checkpoint.py``:
  torch's ``weights_only=True`` with an allow-list scoped to each load;
  ``torch.load`` itself is left as strict as it was), and
  ``_base_ = 'sase_mm::...'`` resolution in mmengine configs.

Neither side imports mmdet or mmpretrain until a module that needs them
(a backbone, a detector config) is used.
"""
import importlib

from .version import __version__  # noqa: F401

try:
    import mmengine  # noqa: F401
except ModuleNotFoundError:  # torch-only use of the blocks
    HAS_MMENGINE = False
else:
    HAS_MMENGINE = True
    from . import registry  # noqa: F401
    from .utils.mim import register_mim_package
    from .utils.safe_checkpoint import install_mmengine_loader

    install_mmengine_loader()
    register_mim_package()

_SUBPACKAGES = ('apis', 'datasets', 'engine', 'evaluation', 'models',
                'registry', 'utils', 'visualization')


def __getattr__(name: str):
    # ``sase_mm.models`` etc. without an explicit import, as before the
    # imports became lazy.
    if name in _SUBPACKAGES:
        return importlib.import_module(f'{__name__}.{name}')
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
