"""Argument checks shared by the attention zoo and the insertion utility.

Each check raises a ``ValueError`` (``TypeError`` for a wrong type) that
names the argument, the value received and what is valid, so a bad config
fails at build time with a message the user can act on.
"""
import numbers
from typing import Union

LatentChannels = Union[int, float]


def check_int(name: str, value, minimum: int = 1) -> int:
    """Returns ``value`` if it is an int >= ``minimum`` (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f'{name} must be an int >= {minimum}, got '
                        f'{value!r} ({type(value).__name__})')
    if value < minimum:
        raise ValueError(f'{name} must be an int >= {minimum}, got {value}')
    return int(value)


def check_choice(name: str, value, choices) -> str:
    """Returns ``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f'{name} must be one of {tuple(choices)}, got '
                         f'{value!r}')
    return value


def check_latent_channels(value: LatentChannels) -> LatentChannels:
    """Validates a hidden width given as a count or as a fraction.

    As in the architecture-agnostic SE method card: a number >= 1 is an
    absolute channel count (an int, or a float with an integral value such
    as ``64.0``); a float strictly between 0 and 1 is a fraction of the
    attended tensor's channels.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'latent_channels must be an int >= 1 (a count) or '
                        f'a float in (0, 1) (a fraction of the channels), '
                        f'got {value!r} ({type(value).__name__})')
    if 0 < value < 1:
        return float(value)
    if value >= 1 and float(value).is_integer():
        return int(value)
    raise ValueError(f'latent_channels must be an int >= 1 (a count) or a '
                     f'float in (0, 1) (a fraction of the channels), got '
                     f'{value!r}')


def resolve_latent_channels(value: LatentChannels, channels: int) -> int:
    """The hidden width for a tensor with ``channels`` channels.

    A fraction f gives ``max(1, int(f * channels))`` (rounded down, as the
    method card's reference does, but never 0); a count is returned as is.
    """
    value = check_latent_channels(value)
    if isinstance(value, float):
        return max(1, int(value * channels))
    return value
