"""The attention slot of a residual block: any attention plug-in, by config.

SASE: Searching Architecture for Squeeze and Excitation operations
(arXiv 2411.08333) puts its block after the last BN of every residual block,
before the shortcut add (SASE-SPEC section 4), the place SE (Hu et al., CVPR
2018) uses too. Every attention module follows one contract:
``Module(in_channels, **cfg)`` with ``forward`` (B, C, H, W) -> (B, C, H, W),
so the same backbone serves the searched block, the search and the baselines.

Searchable blocks (those whose constructor takes ``alphas``, e.g.
``SASESearch``) are handed the one alpha tensor that the backbone owns, so it
appears once in the state_dict (SASE-SPEC section 3: one (6, 7) alpha for the
whole network).
"""
import copy
import inspect
from typing import Optional

import torch.nn as nn

from ...registry import MODELS

# The paper's searched block (SASE-SPEC section 4).
DEFAULT_ATTN_CFG = dict(type='sase_mm.SASE')


def attention_class(attn_cfg: dict) -> type:
    """The class an attention config names.

    Raises:
        TypeError / KeyError: naming the bad config.
    """
    if not isinstance(attn_cfg, dict) or 'type' not in attn_cfg:
        raise TypeError(f'attn_cfg must be None or a dict with a `type` key '
                        f'(e.g. dict(type=\'sase_mm.SASE\')), got '
                        f'{attn_cfg!r}')
    kind = attn_cfg['type']
    if inspect.isclass(kind):
        return kind
    cls = MODELS.get(kind)
    if cls is None:
        raise KeyError(
            f'attention type {kind!r} is not registered; use a registered '
            f"module such as 'sase_mm.SASE', 'sase_mm.SASESearch' (or the "
            f"attention zoo's 'sase_mm.SE', ...), and make sure sase_mm is "
            f"imported (custom_imports=dict(imports=['sase_mm']))")
    return cls


def takes_alphas(attn_cfg: Optional[dict]) -> bool:
    """Whether the configured attention is searchable (takes ``alphas``)."""
    if attn_cfg is None:
        return False
    cls = attention_class(attn_cfg)
    return 'alphas' in inspect.signature(cls).parameters


def build_attention(attn_cfg: Optional[dict], in_channels: int,
                    alphas: Optional[nn.Parameter] = None
                    ) -> Optional[nn.Module]:
    """Builds the attention for a block whose output has ``in_channels``.

    Args:
        attn_cfg (dict | None): ``dict(type=..., **options)``; None gives no
            attention (a plain residual block).
        in_channels (int): C of the block output (B, C, H, W).
        alphas (nn.Parameter, optional): the shared architecture weights,
            passed to searchable attention types (see module docstring).

    Returns:
        nn.Module | None: maps (B, C, H, W) -> (B, C, H, W).
    """
    if attn_cfg is None:
        return None
    cls = attention_class(attn_cfg)
    cfg = copy.deepcopy(attn_cfg)
    cfg['type'] = cls
    cfg['in_channels'] = in_channels
    if alphas is not None and 'alphas' in inspect.signature(
            cls).parameters:
        cfg['alphas'] = alphas
    return MODELS.build(cfg)
