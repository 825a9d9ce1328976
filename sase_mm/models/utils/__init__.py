"""Model utilities: architecture-agnostic attention insertion.

``insert_attention`` adds any registered attention module after every
``nn.Conv2d`` of an arbitrary torch model (the architecture-agnostic SE
method card, docs/attention_zoo.md); ``WithAttention`` does the same from a
config (``type='sase_mm.WithAttention'``).
"""
from .insert_attention import (Conv2dWithAttention, insert_attention,
                               qualifying_convs)
from .with_attention import WithAttention

__all__ = [
    'Conv2dWithAttention', 'WithAttention', 'insert_attention',
    'qualifying_convs'
]
