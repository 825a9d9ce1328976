"""``sase_mm::path/config.py`` in mmengine: ``_base_`` and ``get_config``.

SASE's configs (arXiv 2411.08333) are meant to be inherited and fetched
the OpenMMLab way: ``_base_ = 'sase_mm::faster_rcnn/sase_r50_fpn_1x_coco.py'``
in a config, ``mmengine.hub.get_config('sase_mm::...')`` in code. mmengine
0.10.7 resolves ``pkg::`` paths only for packages listed in its
``MODULE2PACKAGE`` table, then reads ``<package dir>/.mim/model-index.yml``
(the metafiles it imports name each config and its weights) and falls back
to ``<package dir>/.mim/configs/``. sase_mm commits that layout:
``sase_mm/.mim/configs``, ``tools`` and ``model-index.yml`` are symlinks to
the repository's own (``setup.py`` copies them where links fail), so a fresh
clone, a ``git clean -xfd`` and an editable install need nothing generated.

mmengine finds the package dir through the distribution's location, which
is wrong for PEP 660 editable installs (it points at site-packages, not the
checkout). So importing sase_mm (its ``__init__`` calls
:func:`register_mim_package`) adds the package to the table and makes
``get_installed_path`` in mmengine's two readers of ``pkg::`` paths (the
config loader and ``mmengine.hub``) resolve sase_mm from the imported
module. Tools that parse a config before importing sase_mm (e.g. a
downstream copy of mmdet's ``tools/train.py``) need to import it (or list
it in ``custom_imports``) before ``Config.fromfile``.
"""
import importlib
import importlib.util
import os.path as osp

# The modules of mmengine that look a package's dir up by this name.
_PATH_READERS = ('mmengine.config.config', 'mmengine.hub.hub')


def package_dir(name: str = 'sase_mm') -> str:
    """The directory of the imported package (the checkout's, if editable)."""
    return osp.dirname(importlib.util.find_spec(name).origin)


def register_mim_package(name: str = 'sase_mm') -> None:
    """Lets mmengine's config loader and ``mmengine.hub`` resolve ``name::``
    paths (idempotent)."""
    from mmengine.config import utils
    utils.MODULE2PACKAGE.setdefault(name, name)
    if hasattr(utils, 'PKG2PROJECT'):
        utils.PKG2PROJECT.setdefault(name, name)
    for reader in _PATH_READERS:
        module = importlib.import_module(reader)
        original = module.get_installed_path
        if getattr(original, '_sase_mm_patched', False):
            continue
        module.get_installed_path = _resolving(name, original)


def _resolving(name: str, original):
    """``original`` (mmengine's ``get_installed_path``), but ``name`` is
    the imported package's own dir."""

    def get_installed_path(package: str) -> str:
        if package == name:
            return package_dir(name)
        return original(package)

    get_installed_path._sase_mm_patched = True
    return get_installed_path
