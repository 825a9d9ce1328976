"""Deprecated: the attention builder moved to
:mod:`sase_mm.models.layers.builder` (SASE, arXiv 2411.08333)."""
from ..layers.builder import (DEFAULT_ATTN_CFG, attention_class,  # noqa: F401
                              build_attention, is_searchable)

takes_alphas = is_searchable  # the old name of the predicate
