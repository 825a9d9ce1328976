"""How torch-only modules join sase_mm's OpenMMLab registries.

The attention layers, the SASE blocks (SASE, arXiv 2411.08333) and the
attention zoo are plain PyTorch modules: ``from sase_mm.models.sase
import SASE`` works with torch and numpy alone. When mmengine is installed,
:func:`register_model` also registers a class in ``sase_mm.registry.MODELS``
(scope ``sase_mm``), so that ``dict(type='sase_mm.SASE')`` builds it in any
mmdet / mmpretrain config; without mmengine it only returns the class.
"""
from typing import Optional


def _models_registry():
    try:
        from ...registry import MODELS
    except ModuleNotFoundError as err:
        if err.name and err.name.split('.')[0] == 'mmengine':
            return None  # torch-only use: nothing to register into
        raise
    return MODELS


def register_model(cls: Optional[type] = None, *, name: Optional[str] = None):
    """Class decorator: ``@register_model`` or ``@register_model(name=...)``.

    Registers into sase_mm's ``MODELS`` when mmengine is importable.
    """
    def register(c):
        registry = _models_registry()
        if registry is not None:
            registry.register_module(name=name, module=c)
        return c

    return register(cls) if cls is not None else register
