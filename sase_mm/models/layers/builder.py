"""The one attention builder: any attention module, by config.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333) puts its block, or any module of the attention zoo, after
the last BN of every residual block (docs/spec.md section 4), the place SE
(Hu et al., CVPR 2018) uses too; the architecture-agnostic insertion puts
one after every conv. Every attention module follows one contract,
``Module(in_channels, **cfg)`` with ``forward`` (B, C, H, W) -> (B, C, H, W),
so the same backbones serve the searched block, the search and the
baselines. This module resolves a config's ``type``, says whether it reads
the network's shared alpha (:func:`reads_alphas`: the class sets
``reads_alphas = True``, like ``SASESearch``; the network that builds it
then binds its one alpha to it, ``sase/alphas.py``), and builds it. It
needs the mm registries only to resolve a ``type`` string.
"""
import copy
import inspect
from typing import Any, Mapping, Optional

import torch.nn as nn

# The paper's searched block (docs/spec.md section 4).
DEFAULT_ATTN_CFG = dict(type='sase_mm.SASE')
# Names an error message suggests (the SASE blocks and the zoo's).
KNOWN_TYPES = ('SASE', 'SASESearch', 'SE', 'SSA', 'ECA', 'CBAM', 'SRM',
               'GCT', 'GSoP', 'MCA', 'EAN', 'GatedCT')


def attention_class(attn_cfg: Mapping) -> type:
    """The class an attention config names (``type``: a class or a
    registered name).

    Raises:
        TypeError: ``attn_cfg`` is not a dict with a ``type``.
        KeyError: the type is not registered (the message lists valid ones).
    """
    if not isinstance(attn_cfg, Mapping) or 'type' not in attn_cfg:
        raise TypeError(f'attn_cfg must be None or a dict with a `type` key '
                        f'(e.g. dict(type=\'sase_mm.SASE\')), got '
                        f'{attn_cfg!r}')
    kind = attn_cfg['type']
    if inspect.isclass(kind):
        return kind
    from ...registry import MODELS
    cls = MODELS.get(kind)
    if cls is None:
        names = ', '.join(f"'sase_mm.{n}'" for n in KNOWN_TYPES)
        raise KeyError(
            f'attention type {kind!r} is not registered; use a registered '
            f'module such as {names}, and make sure sase_mm is imported '
            f"(custom_imports=dict(imports=['sase_mm']))")
    return cls


def reads_alphas(attention: Any) -> bool:
    """Whether an attention (a config dict, a class or a module) is a
    searchable block that mixes its operations by the network's shared
    alpha (``SASESearch``): its class sets ``reads_alphas = True``.

    A network whose attention reads alphas owns one alpha and binds it to
    its blocks after building them (``sase/alphas.py``).
    """
    if attention is None:
        return False
    if isinstance(attention, nn.Module):
        cls = type(attention)
    elif inspect.isclass(attention):
        cls = attention
    else:
        cls = attention_class(attention)
    return getattr(cls, 'reads_alphas', False) is True


def takes_option(attn_cfg: Mapping, name: str) -> bool:
    """Whether the configured class's constructor takes ``name``."""
    return name in inspect.signature(attention_class(attn_cfg)).parameters


def build_attention(attn_cfg: Optional[Mapping], in_channels: int,
                    **defaults) -> Optional[nn.Module]:
    """Builds the attention for a feature map of ``in_channels`` channels.

    Args:
        attn_cfg (dict | None): ``dict(type=..., **options)``; None gives no
            attention (a plain residual block).
        in_channels (int): C of the map (B, C, H, W).
        **defaults: options passed when the class takes them and the config
            does not set them (e.g. ``spatial_size``).

    Returns:
        nn.Module | None: maps (B, C, H, W) -> (B, C, H, W).
    """
    if attn_cfg is None:
        return None
    cls = attention_class(attn_cfg)
    cfg = dict(copy.deepcopy(dict(attn_cfg)), type=cls,
               in_channels=in_channels)
    params = inspect.signature(cls).parameters
    for key, value in defaults.items():
        if key not in cfg and key in params:
            cfg[key] = value
    del cfg['type']
    return cls(**cfg)
