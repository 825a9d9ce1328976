"""sase_mm: SASE (arXiv 2411.08333) for OpenMMLab.

Importing the package registers its modules into its registries (children of
mmengine's under the scope ``sase_mm``) and allow-lists the globals that
mmengine checkpoints need under torch's safe ``weights_only=True`` loader,
and makes ``_base_ = 'sase_mm::...'`` resolve in mmengine configs.
"""
from .version import __version__  # noqa: F401
from . import registry  # noqa: F401
from .utils import allow_mmengine_checkpoints, register_mim_package

allow_mmengine_checkpoints()
register_mim_package()

from . import models  # noqa: F401,E402
from . import datasets, engine, evaluation  # noqa: F401,E402
