"""Deprecated: moved to :mod:`sase_mm.models.layers.arg_checks`."""
from ..layers.arg_checks import *  # noqa: F401,F403
from ..layers.arg_checks import (LatentChannels, check_choice,  # noqa: F401
                                 check_int, check_latent_channels,
                                 resolve_latent_channels)
