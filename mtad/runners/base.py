"""The runner: one model plus its KV cache, and the only code that calls a model.

Decoders ask a runner to feed tokens (it feeds only what the cache lacks), to crop the cache
after a rejection, to select or repeat batch rows (beams) and to keep arbitrary positions (a
tree's accepted path). It counts forward calls, tokens and seconds. Backends
(``mtad/runners/catalogue.py``) subclass ``Runner``; docs/backends.md states the contract.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


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
