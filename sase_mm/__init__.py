"""sase_mm: SASE (arXiv 2411.08333) for OpenMMLab.

Importing the package registers its modules into its registries (children of
mmengine's under the scope ``sase_mm``), makes mmengine load local
checkpoints with sase_mm's safe loader (``utils/safe_checkpoint.py``: torch's
``weights_only=True`` with an allow-list scoped to each load; ``torch.load``
itself is left as strict as it was), and makes
``_base_ = 'sase_mm::...'`` resolve in mmengine configs.
"""
from .version import __version__  # noqa: F401
from . import registry  # noqa: F401
from .utils import install_mmengine_loader, register_mim_package

install_mmengine_loader()
register_mim_package()

from . import models  # noqa: F401,E402
from . import datasets, engine, evaluation  # noqa: F401,E402
