"""A model pair, loaded: the only code that calls a model or edits its KV cache.

A ``Runner`` wraps one causal LM and its cache. Decoders ask it to feed tokens (it feeds only
what the cache lacks), to crop the cache after a rejection, to select or repeat batch rows
(beams) and to keep arbitrary positions (a tree's accepted path). It counts forward calls,
tokens and seconds. A ``Pair`` holds the target and draft runners and what they share.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch

from mtad import cache as kv
from mtad.errors import UserError
from mtad.matmul import wide_matmuls
from mtad.quant import head_logits

DRAFT_ROOM = 64  # cache positions a round may feed beyond the committed tokens (drafts, trees)


@dataclass
class ForwardCounter:
    calls: int = 0
    tokens: int = 0  # token positions fed, summed over batch rows
    seconds: float = 0.0
    compile_seconds: float = 0.0  # calls that compiled a new shape (static backend), kept out of ``seconds``


class Runner(ABC):
    """One model plus its cache. Sub-classes implement the forward pass and the cache edits."""

    vocab_size: int
    device: torch.device
    capacity: int | None = None  # most positions the cache can hold (None: no fixed limit)

    def __init__(self):
        self.counter = ForwardCounter()
        self.compiling = False  # set by ``_forward`` when this call compiled a new shape

    # -- what sub-classes provide -------------------------------------------------------
    @abstractmethod
    def reset(self) -> None:
        """Empty the cache and zero the counters (start of a generation)."""

    @property
    @abstractmethod
    def length(self) -> int:
        """Number of positions in the cache."""

    @abstractmethod
    def _forward(self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None, keep: int) -> torch.Tensor:
        """Run the model on ``tokens`` [B, n], append them to the cache, return logits [B, keep, V]
        of the last ``keep`` positions. ``mask`` is None (causal) or a bool [n, m] matrix: which of the
        last m key positions (cached tail plus the n new tokens) each new token may see; keys
        before those are always visible."""

    @abstractmethod
    def crop(self, length: int) -> None:
        """Keep the first ``length`` cached positions."""

    @abstractmethod
    def select_rows(self, rows: list[int] | torch.Tensor) -> None:
        """Keep (and reorder, repeat) batch rows of the cache."""

    @abstractmethod
    def keep_positions(self, positions: list[int] | torch.Tensor) -> None:
        """Keep only these cached positions, in this order."""

    # -- shared -------------------------------------------------------------------------
    def feed(self, tokens: torch.Tensor, positions: torch.Tensor | None = None,
             tree_mask: torch.Tensor | None = None, keep: int = 1) -> torch.Tensor:
        """Feed new tokens [B, n] after the cache; logits [B, keep, V] of the last ``keep`` positions.

        Without ``tree_mask`` the tokens are causal and positions default to the cache length
        onwards. With it (bool [n, m], m <= cached + n: True where new token i may attend to the
        j-th of the last m key positions; earlier keys are always visible) explicit ``positions``
        [B, n] are required.
        """
        tokens = torch.as_tensor(tokens, dtype=torch.long, device=self.device)
        if tokens.dim() != 2 or tokens.shape[1] == 0:
            raise ValueError(f"feed expects a non-empty [batch, n] token tensor, got shape {tuple(tokens.shape)}")
        batch, n = tokens.shape
        if not 1 <= keep <= n:
            raise ValueError(f"keep must lie in [1, {n}], got {keep}")
        if tree_mask is not None:
            if positions is None:
                raise ValueError("a tree mask needs explicit position ids")
            if tree_mask.dim() != 2 or tree_mask.shape[0] != n or not n <= tree_mask.shape[1] <= self.length + n:
                raise ValueError(f"tree mask must be [n={n}, m] with n <= m <= cached + n, got {tuple(tree_mask.shape)}")
        if positions is None:
            positions = torch.arange(self.length, self.length + n, device=self.device).expand(batch, n)
        positions = torch.as_tensor(positions, dtype=torch.long, device=self.device)
        start = time.perf_counter()
        self.compiling = False
        with torch.inference_mode():
            logits = self._forward(tokens, positions, tree_mask, keep)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - start
        if self.compiling:
            self.counter.compile_seconds += elapsed
        else:
            self.counter.seconds += elapsed
        self.counter.calls += 1
        self.counter.tokens += batch * n
        return logits

    def feed_uncached(self, sequence: list[int], keep: int = 1) -> torch.Tensor:
        """Feed the part of ``sequence`` (one row) that the cache lacks; logits [keep, V]."""
        new = sequence[self.length:]
        if not new:
            raise ValueError("nothing to feed: the cache already holds the whole sequence")
        return self.feed(torch.tensor([new]), keep=keep)[0]


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
        """The context every eager forward runs in (``mtad.matmul``: wide bf16 matmuls on CPUs
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


@dataclass(frozen=True)
class PairInfo:
    """What a task may know of a pair: its name and text side, none of the models or caches."""

    name: str
    tokenizer: Any            # None for the token-level test pairs
    chat_template: bool       # whether text prompts go through the tokenizer's chat template
    vocab_size: int


@dataclass
class Pair:
    """A loaded model pair: target and draft runners, their stop ids and shared tokenizer."""

    target: Runner
    draft: Runner
    name: str = ""
    stop_ids: tuple[int, ...] = field(default_factory=tuple)
    tokenizer: Any = None  # shared by both models; None for the token-level test pairs
    chat_template: bool = False  # whether text prompts go through the tokenizer's chat template

    def __post_init__(self):
        if self.target.vocab_size != self.draft.vocab_size:
            raise UserError(f"draft and target vocabularies differ: target has {self.target.vocab_size} ids, "
                            f"draft has {self.draft.vocab_size}")

    @property
    def device(self) -> torch.device:
        return self.target.device

    @property
    def info(self) -> PairInfo:
        return PairInfo(self.name, self.tokenizer, self.chat_template, self.target.vocab_size)

    def reset(self) -> None:
        self.target.reset()
        self.draft.reset()

    def check_fits(self, prompt_tokens: int, new_tokens: int) -> None:
        """One ``UserError`` unless a generation of ``new_tokens`` after ``prompt_tokens`` fits the
        caches, with ``DRAFT_ROOM`` positions for drafts and trees fed beyond the output."""
        capacities = [r.capacity for r in (self.target, self.draft) if r.capacity is not None]
        if capacities and prompt_tokens + new_tokens + DRAFT_ROOM > min(capacities):
            raise UserError(f"a prompt of {prompt_tokens} tokens plus {new_tokens} new tokens (and {DRAFT_ROOM} for "
                            f"drafts) exceeds the static KV cache of {min(capacities)} positions: raise "
                            "pair.max_length or lower max_new_tokens")
