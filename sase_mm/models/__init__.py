from .attention import *  # noqa: F401,F403
