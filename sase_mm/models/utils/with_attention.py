"""``WithAttention``: architecture-agnostic attention insertion from a config.

Method: the architecture-agnostic Squeeze-and-Excitation method card
(docs/attention_zoo.md; SE: Hu, Shen and Sun, CVPR 2018); see
:func:`~sase_mm.models.utils.insert_attention`.

Registered in MODELS as a builder: ``type='sase_mm.WithAttention'`` builds the
inner model from the registry, inserts the attention modules and returns the
inner model itself, so it drops into any config slot (a backbone, a whole
classifier) with the inner model's class, methods and state-dict layout::

    model = dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(
            type='sase_mm.WithAttention',
            model=dict(type='mmpretrain.ResNet', depth=50),
            attn_cfg=dict(type='sase_mm.SE'),
            min_channels=128, latent_channels=64),
        ...)
"""
from typing import Mapping, Optional, Union

import torch.nn as nn

from ...registry import MODELS
from ..layers.arg_checks import LatentChannels
from .insert_attention import DEFAULT_MIN_CHANNELS, insert_attention


@MODELS.register_module(name='WithAttention')
def WithAttention(model: Union[Mapping, nn.Module],
                  attn_cfg: Optional[Mapping] = None,
                  min_channels: int = DEFAULT_MIN_CHANNELS,
                  latent_channels: Optional[LatentChannels] = None
                  ) -> nn.Module:
    """Builds ``model`` and adds attention after its qualifying Conv2d layers.

    Args:
        model (dict | nn.Module): config of the model, built from sase_mm's
            MODELS (any OpenMMLab scope via ``'scope.Type'``), or a module.
        attn_cfg, min_channels, latent_channels: as
            :func:`~sase_mm.models.utils.insert_attention`.

    Returns:
        nn.Module: the inner model, with attention inserted.
    """
    if isinstance(model, Mapping):
        model = MODELS.build(model)
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be a config dict (with 'type') or an "
                        f'nn.Module, got {type(model).__name__}')
    return insert_attention(model, attn_cfg, min_channels=min_channels,
                            latent_channels=latent_channels)
