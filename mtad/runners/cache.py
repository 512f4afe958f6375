"""The few KV-cache edits the pair needs, written against transformers' DynamicCache.

``DynamicCache.crop`` changed its argument's meaning across 5.x (an absolute length, then a
negative count, with ``crop(0)`` meaning different things), so we edit each layer's key and
value tensors ([batch, heads, seq, head_dim]) ourselves. These functions are the only code
in the project that looks inside a cache.
"""

from __future__ import annotations

from typing import Callable

import torch
from transformers import DynamicCache


def _edit_layers(cache: DynamicCache, edit: Callable[[torch.Tensor], torch.Tensor]) -> None:
    for layer in cache.layers:
        if getattr(layer, "is_sliding", False):
            raise NotImplementedError("sliding-window attention caches cannot be cropped or re-indexed here")
        if not layer.is_initialized or layer.keys.numel() == 0:
            continue
        layer.keys = edit(layer.keys)
        layer.values = edit(layer.values)


def cache_length(cache: DynamicCache) -> int:
    return cache.get_seq_length()


def crop(cache: DynamicCache, length: int) -> None:
    """Keep the first ``length`` positions."""
    _edit_layers(cache, lambda t: t[..., :length, :])


def select_rows(cache: DynamicCache, rows: torch.Tensor) -> None:
    """Keep batch rows ``rows`` (indices may repeat: [0, 0, 0] turns one row into three)."""
    _edit_layers(cache, lambda t: t.index_select(0, rows.to(t.device)))


def keep_positions(cache: DynamicCache, positions: torch.Tensor) -> None:
    """Keep sequence positions ``positions`` in that order, in every row (e.g. a tree's accepted path)."""
    _edit_layers(cache, lambda t: t.index_select(-2, positions.to(t.device)))
