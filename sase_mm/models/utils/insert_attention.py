"""Architecture-agnostic attention insertion: a module after every Conv2d.

Method: the architecture-agnostic Squeeze-and-Excitation method card
(docs/attention_zoo.md, after SE: Hu, Shen and Sun, "Squeeze-and-Excitation
Networks", CVPR 2018). Instead of fixed points of a known architecture, an
attention module follows every ``nn.Conv2d`` of an arbitrary model whose
output has at least ``min_channels`` channels; ``latent_channels`` sets the
hidden width of the module's MLP, as a count (>= 1) or as a fraction (a float
in (0, 1)) of the conv's output channels. The card describes SE; here any
registered attention module with the plug-in contract
``Attention(in_channels, **options)``, (B, C, H, W) -> (B, C, H, W), works.

Each qualifying conv is replaced by a :class:`Conv2dWithAttention` holding the
original conv (``.conv``) and the new module (``.attention``), so the
attention sits between the conv and whatever follows it (usually its BN), as
in the card's reference. The wrapper accepts a plain conv's state-dict keys
(``weight``, ``bias``), so a checkpoint of the model without attention loads
into the model with it; only the attention modules' keys are then missing.
"""
import inspect
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from ..layers.arg_checks import (LatentChannels, check_int,
                                 check_latent_channels)
from ..layers.builder import attention_class, build_attention

# The method card's suggested values.
DEFAULT_LATENT_CHANNELS = 64
DEFAULT_MIN_CHANNELS = 128


def _accept_plain_conv_keys(module, state_dict, prefix, *args) -> None:
    """Load-state-dict pre-hook: ``<p>weight`` -> ``<p>conv.weight``."""
    for name in ('weight', 'bias'):
        plain, wrapped = prefix + name, prefix + 'conv.' + name
        if plain in state_dict and wrapped not in state_dict:
            state_dict[wrapped] = state_dict.pop(plain)


class Conv2dWithAttention(nn.Module):
    """A Conv2d followed by an attention module.

    Attributes the conv has and the wrapper lacks (``out_channels``,
    ``kernel_size``, ``weight``, ...) are read from the conv, so code that
    inspects the layer keeps working.

    Args:
        conv (nn.Conv2d): the wrapped convolution.
        attention (nn.Module): (B, C_out, H', W') -> same shape.
    """

    def __init__(self, conv: nn.Conv2d, attention: nn.Module):
        super().__init__()
        self.conv = conv
        self.attention = attention
        self.register_load_state_dict_pre_hook(_accept_plain_conv_keys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, H, W) -> (B, C_out, H', W')."""
        return self.attention(self.conv(x))

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get('_modules')
            if not modules or 'conv' not in modules:
                raise
            return getattr(modules['conv'], name)


def _walk_convs(module: nn.Module, prefix: str = ''
                ) -> Iterator[Tuple[str, nn.Module, str, nn.Conv2d]]:
    """(full name, parent, child name, conv) for every Conv2d not yet wrapped.

    Does not descend into a :class:`Conv2dWithAttention` (neither its conv nor
    the convs inside its attention module), so inserting twice adds nothing.
    """
    # _modules, not named_children(): a conv shared by two parents is seen
    # (and replaced) at both places.
    for name, child in module._modules.items():
        if child is None:
            continue
        full = f'{prefix}.{name}' if prefix else name
        if isinstance(child, Conv2dWithAttention):
            continue
        if isinstance(child, nn.Conv2d):
            yield full, module, name, child
        else:
            yield from _walk_convs(child, full)


def qualifying_convs(model: nn.Module, min_channels: int = DEFAULT_MIN_CHANNELS
                     ) -> List[Tuple[str, nn.Conv2d]]:
    """The (name, conv) pairs that :func:`insert_attention` would wrap."""
    min_channels = check_int('min_channels', min_channels, minimum=0)
    return [(full, conv) for full, _, _, conv in _walk_convs(model)
            if conv.out_channels >= min_channels]


def _attention_class(attn_cfg: Mapping):
    if isinstance(attn_cfg, Mapping) and 'in_channels' in attn_cfg:
        raise ValueError("attn_cfg must not set 'in_channels': it is taken "
                         "from each conv's out_channels")
    return attention_class(attn_cfg)


def _resolve_latent(cls, attn_cfg: Mapping,
                    latent_channels: Optional[LatentChannels]
                    ) -> Optional[LatentChannels]:
    """The ``latent_channels`` to pass to every module (None: pass none)."""
    takes_latent = 'latent_channels' in inspect.signature(cls).parameters
    width_in_cfg = [k for k in ('latent_channels', 'reduction')
                    if k in attn_cfg]
    if latent_channels is None:
        if takes_latent and not width_in_cfg:
            return DEFAULT_LATENT_CHANNELS
        return None
    latent_channels = check_latent_channels(latent_channels)
    if not takes_latent:
        raise ValueError(
            f'latent_channels={latent_channels!r} was given, but '
            f'{cls.__name__} has no hidden layer (its constructor takes no '
            f"'latent_channels'); leave latent_channels=None, or use a module "
            f"that has one, e.g. 'sase_mm.SE' or 'sase_mm.CBAM'")
    if width_in_cfg:
        raise ValueError(f'latent_channels={latent_channels!r} conflicts with '
                         f'{width_in_cfg} in attn_cfg; give the hidden width '
                         f'once')
    return latent_channels


def insert_attention(model: nn.Module, attn_cfg: Optional[Mapping] = None,
                     min_channels: int = DEFAULT_MIN_CHANNELS,
                     latent_channels: Optional[LatentChannels] = None
                     ) -> nn.Module:
    """Adds an attention module after every qualifying Conv2d, in place.

    Args:
        model (nn.Module): any torch model (not itself a Conv2d).
        attn_cfg (dict, optional): config of the attention module, built from
            sase_mm's MODELS registry with ``in_channels`` set to each conv's
            ``out_channels``; default ``dict(type='sase_mm.SE')``.
        min_channels (int): a conv qualifies when its ``out_channels`` is at
            least this (the card suggests 128; 0 or 1: every conv).
        latent_channels (int | float, optional): hidden width of the
            module's MLP: an int >= 1 is a channel count, a float in (0, 1) a
            fraction of each conv's output channels. Only for modules whose
            constructor takes ``latent_channels`` (SE, CBAM). ``None``: the
            card's 64 for such modules unless ``attn_cfg`` sets
            ``latent_channels`` or ``reduction``; nothing for the others.

    Returns:
        nn.Module: ``model``, modified in place. Convs already followed by an
        attention module (and the attention modules' own convs) are left
        alone, so a second call adds nothing.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f'model must be a torch.nn.Module, got '
                        f'{type(model).__name__}')
    if isinstance(model, nn.Conv2d):
        raise TypeError('model is itself a Conv2d and cannot be replaced in '
                        'place; wrap it in a container (e.g. nn.Sequential)')
    attn_cfg = dict(type='sase_mm.SE') if attn_cfg is None else attn_cfg
    cls = _attention_class(attn_cfg)
    latent = _resolve_latent(cls, attn_cfg, latent_channels)
    min_channels = check_int('min_channels', min_channels, minimum=0)

    targets = [t for t in _walk_convs(model)
               if t[3].out_channels >= min_channels]
    wrapped: Dict[int, Conv2dWithAttention] = {}  # a conv shared by 2 parents
    for _, parent, name, conv in targets:
        if id(conv) not in wrapped:
            cfg = dict(attn_cfg)
            if latent is not None:
                cfg['latent_channels'] = latent
            attention = build_attention(cfg, conv.out_channels)
            attention.to(device=conv.weight.device)
            wrapped[id(conv)] = Conv2dWithAttention(conv, attention)
        setattr(parent, name, wrapped[id(conv)])
    return model
