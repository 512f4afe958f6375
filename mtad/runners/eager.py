"""The eager backend's runner: a transformers causal LM with its DynamicCache (``pair.backend=eager``)."""

from __future__ import annotations

import torch

from mtad.runners import cache as kv
from mtad.runners.base import KEPT_POSITIONS, ROW_SELECTION, TREE_MASKS, ForwardCounter
from mtad.runners.hf import TransformersRunner


class EagerRunner(TransformersRunner):
    """A transformers causal LM with a DynamicCache, one Python module call per operation."""

    capabilities = TransformersRunner.capabilities | {TREE_MASKS, ROW_SELECTION, KEPT_POSITIONS}
    quantizations = ("none", "int8")

    def __init__(self, model, head_rows: int | None = None):
        super().__init__(model, head_rows=head_rows)
        from transformers import DynamicCache

        self._cache_class = DynamicCache
        self.cache = DynamicCache(config=model.config)

    def reset(self) -> None:
        self.cache = self._cache_class(config=self.model.config)
        self.counter = ForwardCounter()

    @property
    def length(self) -> int:
        return kv.cache_length(self.cache)

    def _forward(self, tokens, positions, mask, keep):
        attention_mask = None if mask is None else self._additive_mask(mask, tokens.shape[0])
        inputs = dict(input_ids=tokens, position_ids=positions, attention_mask=attention_mask,
                      cache=self.cache, use_cache=True)
        if self.head_rows is None:
            with self.eager():
                return self.model(**inputs, logits_to_keep=keep).logits
        with self.eager():
            hidden = self.model.get_decoder()(**inputs).last_hidden_state[:, -keep:]
        return self._head(hidden)

    def _additive_mask(self, tree_mask: torch.Tensor, batch: int) -> torch.Tensor:
        """[B, 1, n, cached + n] float mask: 0 where attention is allowed, dtype-min elsewhere.

        Float, not bool: a bool 4-D mask is silently mis-read by some attention implementations.
        """
        dtype = self.model.dtype
        n, m = tree_mask.shape
        allowed = torch.ones(n, self.length + n, dtype=torch.bool, device=self.device)
        allowed[:, self.length + n - m:] = tree_mask.to(self.device, torch.bool)
        mask = torch.zeros(allowed.shape, dtype=dtype, device=self.device)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask.expand(batch, 1, n, self.length + n)

    def crop(self, length: int) -> None:
        kv.crop(self.cache, length)

    def select_rows(self, rows) -> None:
        kv.select_rows(self.cache, torch.as_tensor(rows, dtype=torch.long))

    def keep_positions(self, positions) -> None:
        kv.keep_positions(self.cache, torch.as_tensor(positions, dtype=torch.long))
