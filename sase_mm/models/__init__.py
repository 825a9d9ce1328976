from .attention import *  # noqa: F401,F403
from . import backbones, search  # noqa: F401,E402
from . import attention_zoo, utils  # noqa: F401,E402
