"""Make ``_base_ = 'sase_mm::path/config.py'`` resolve in mmengine configs.

mmengine 0.10.7 resolves ``pkg::`` config paths only for packages listed in
its ``MODULE2PACKAGE`` table, then looks for ``<package dir>/.mim/configs/``
and reads ``<package dir>/.mim/model-index.yml``. sase_mm commits that
layout (``sase_mm/.mim/configs`` and ``tools`` are symlinks to the
repository's own folders, beside the index), so a fresh clone, a
``git clean -xfd`` and an editable install need nothing generated. mmengine
finds the package dir through the distribution's location, which is wrong
for PEP 660 editable installs (it points at site-packages, not the
checkout); so ``import sase_mm`` adds the package to the table and resolves
its own path from the imported module. Tools that parse a config before
importing sase_mm (e.g. a downstream copy of mmdet's ``tools/train.py``)
need ``import sase_mm`` (or ``custom_imports``) before ``Config.fromfile``.
"""
import importlib.util
import os.path as osp


def package_dir(name: str = 'sase_mm') -> str:
    """The directory of the imported package (the checkout's, if editable)."""
    return osp.dirname(importlib.util.find_spec(name).origin)


def register_mim_package(name: str = 'sase_mm') -> None:
    """Lets mmengine's config loader resolve ``name::`` paths."""
    from mmengine.config import config, utils
    utils.MODULE2PACKAGE.setdefault(name, name)
    if hasattr(utils, 'PKG2PROJECT'):
        utils.PKG2PROJECT.setdefault(name, name)
    original = config.get_installed_path
    if getattr(original, '_sase_mm_patched', False):
        return

    def get_installed_path(package: str) -> str:
        if package == name:
            return package_dir(name)
        return original(package)

    get_installed_path._sase_mm_patched = True
    config.get_installed_path = get_installed_path
