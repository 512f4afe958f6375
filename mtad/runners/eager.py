"""The eager backend: a transformers causal LM with its DynamicCache (``pair.backend=eager``)."""

from __future__ import annotations

import torch

from mtad.errors import UserError
from mtad.runners import cache as kv
from mtad.runners.base import ForwardCounter, Runner
from mtad.runners.matmul import wide_matmuls
from mtad.runners.quant import head_logits


class HFRunner(Runner):
    """A Hugging Face causal LM with a DynamicCache.

    ``head_rows`` restricts the output head to the first N token ids (the others get logit -inf,
    so the model never proposes them). Meant for a draft on a memory-bound CPU: the 0.5B Qwen's
    151,936-row head is over a quarter of its weights (a forward takes 50 ms with it, 40 ms with
    32,768 rows), and byte-level BPE ids are ranked by merge order, which tracks token frequency.
    Verification by the full target keeps lossless decoders lossless; only how often drafts are
    accepted changes.
    """

    def __init__(self, model, head_rows: int | None = None):
        super().__init__()
        from transformers import DynamicCache

        self._cache_class = DynamicCache
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.dtype = model.get_input_embeddings().weight.dtype
        head = model.get_output_embeddings()
        self.vocab_size = head.out_features
        if head_rows is not None and not 1 <= head_rows <= self.vocab_size:
            raise UserError(f"head_rows must lie in [1, {self.vocab_size}], got {head_rows}")
        self.head_rows = None if head_rows == self.vocab_size else head_rows
        self.cache = DynamicCache(config=model.config)

    def reset(self) -> None:
        self.cache = self._cache_class(config=self.model.config)
        self.counter = ForwardCounter()

    @property
    def length(self) -> int:
        return kv.cache_length(self.cache)

    def eager(self):
        """The context every eager forward runs in (``mtad.runners.matmul``: wide bf16 matmuls on CPUs
        without bf16 arithmetic run in float32)."""
        return wide_matmuls(self.dtype, self.device)

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

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits [B, k, V] of final hidden states [B, k, hidden]; ids >= ``head_rows`` get -inf."""
        head = self.model.get_output_embeddings()
        if self.head_rows is None:
            with self.eager():
                return head(hidden)
        logits = torch.full((*hidden.shape[:2], self.vocab_size), float("-inf"), dtype=hidden.dtype, device=self.device)
        with self.eager():
            logits[..., : self.head_rows] = head_logits(head, hidden, self.head_rows)
        return logits

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
