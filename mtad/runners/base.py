"""The runner: one model plus its KV cache, and the only code that calls a model.

Decoders ask a runner to feed tokens (it feeds only what the cache lacks), to crop the cache
after a rejection, to select or repeat batch rows (beams) and to keep arbitrary positions (a
tree's accepted path). It counts forward calls, tokens and seconds. Backends
(``mtad/runners/catalogue.py``) subclass ``Runner``; docs/backends.md states the contract.

What a runner can do beyond feeding one row causally and cropping is declared, per class, in
``capabilities``; a decoder declares what it needs (``Decoder.needs``), and a mismatch is refused
before any model loads (``mtad/runners/catalogue.py``) and again at generation (``Pair``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from mtad.errors import UserError

# Capabilities (docs/backends.md#capabilities). Every runner feeds one row causally and crops.
TREE_MASKS = "tree_masks"                  # feed(tree_mask=..., positions=...): a token tree in one forward
ROW_SELECTION = "row_selection"            # feeds of several batch rows, and select_rows (beams)
KEPT_POSITIONS = "kept_positions"          # keep_positions (a tree's accepted path)
TRANSFORMERS_MODEL = "transformers_model"  # transformers_model(): the transformers model inside
GGUF_FILE = "gguf_file"                    # gguf_file(): the GGUF file it runs (llama.cpp)
CAPABILITIES = (TREE_MASKS, ROW_SELECTION, KEPT_POSITIONS, TRANSFORMERS_MODEL, GGUF_FILE)


def require_capabilities(needs, has, user: str, provider: str, alternatives: str = "") -> None:
    """One ``UserError`` unless ``has`` covers ``needs``: ``user`` (e.g. "decoder 'mtad'") needs
    what ``provider`` (e.g. "pair.backend=recompute") lacks; ``alternatives`` ends the line."""
    unknown = sorted(set(needs) - set(CAPABILITIES))
    if unknown:
        raise ValueError(f"{user} needs unknown capabilities {unknown} (known: {', '.join(CAPABILITIES)})")
    lacking = [c for c in CAPABILITIES if c in needs and c not in has]
    if lacking:
        raise UserError(f"{user} needs {', '.join(lacking)}, which {provider} lacks{alternatives}")


class ForwardCounter:
    """What a runner's forwards cost since its last reset: ``calls``, ``tokens`` (positions fed,
    summed over batch rows), ``seconds``, and ``compile_seconds`` (calls that compiled a new shape
    or captured a CUDA graph, static backend), kept out of ``seconds``.

    On CUDA a forward is timed by two CUDA events recorded around it on the device's stream, not by
    synchronising after it: the loop never waits for the device only to time it. The event pairs
    wait in ``pending`` until ``seconds`` or ``compile_seconds`` is read (``generate`` reads them
    after its closing synchronisation); reading waits for the last of them.
    """

    def __init__(self):
        self.calls = 0
        self.tokens = 0
        self._seconds = 0.0
        self._compile_seconds = 0.0
        self.pending: list[tuple[object, object, bool]] = []  # (start, end, compiling) events not read yet

    def book(self, seconds: float, compiling: bool) -> None:
        """A forward timed by the host clock (it was done when it returned)."""
        if compiling:
            self._compile_seconds += seconds
        else:
            self._seconds += seconds

    def resolve(self) -> None:
        """Book the pending event pairs' elapsed times, waiting for each pair's end."""
        pending, self.pending = self.pending, []
        for start, end, compiling in pending:
            end.synchronize()
            self.book(start.elapsed_time(end) / 1e3, compiling)  # elapsed_time is in ms

    @property
    def seconds(self) -> float:
        self.resolve()
        return self._seconds

    @seconds.setter
    def seconds(self, value: float) -> None:  # e.g. ``counter.seconds += t`` (baselines/hf_assisted.py)
        self.resolve()
        self._seconds = value

    @property
    def compile_seconds(self) -> float:
        self.resolve()
        return self._compile_seconds

    @compile_seconds.setter
    def compile_seconds(self, value: float) -> None:
        self.resolve()
        self._compile_seconds = value

    def __repr__(self) -> str:
        return (f"ForwardCounter(calls={self.calls}, tokens={self.tokens}, seconds={self.seconds}, "
                f"compile_seconds={self.compile_seconds})")


class Runner(ABC):
    """One model plus its cache. Sub-classes implement the forward pass and the cache edits, and
    declare what they can do (the class attributes below; docs/backends.md)."""

    capabilities: ClassVar[frozenset[str]] = frozenset()  # of CAPABILITIES; each one's method is overridden
    devices: ClassVar[tuple[str, ...] | None] = None      # device types it runs on (None: any torch device)
    quantizations: ClassVar[tuple[str, ...]] = ("none",)  # pair.*_quant values it runs (mtad/runners/quant.py)

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

    # -- what sub-classes with a capability provide ------------------------------------------
    def select_rows(self, rows: list[int] | torch.Tensor) -> None:
        """Keep (and reorder, repeat) batch rows of the cache (``ROW_SELECTION``)."""
        raise self._lacks(ROW_SELECTION)

    def keep_positions(self, positions: list[int] | torch.Tensor) -> None:
        """Keep only these cached positions, in this order (``KEPT_POSITIONS``)."""
        raise self._lacks(KEPT_POSITIONS)

    def transformers_model(self):
        """The transformers model inside, for code that runs it its own way (``TRANSFORMERS_MODEL``:
        baselines/hf_assisted.py calls its ``generate``)."""
        raise self._lacks(TRANSFORMERS_MODEL)

    def gguf_file(self):
        """The GGUF file this runner's model was loaded from, for code that runs it its own way
        (``GGUF_FILE``: baselines/llamacpp_plain.py runs llama.cpp's own generation on it)."""
        raise self._lacks(GGUF_FILE)

    def _lacks(self, capability: str) -> Exception:
        return NotImplementedError(f"{type(self).__name__} lacks {capability} (its capabilities: "
                                   f"{', '.join(sorted(self.capabilities)) or 'none'})")

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
        if batch > 1 and ROW_SELECTION not in self.capabilities:
            raise self._lacks(ROW_SELECTION)
        if tree_mask is not None:
            if TREE_MASKS not in self.capabilities:
                raise self._lacks(TREE_MASKS)
            if positions is None:
                raise ValueError("a tree mask needs explicit position ids")
            if tree_mask.dim() != 2 or tree_mask.shape[0] != n or not n <= tree_mask.shape[1] <= self.length + n:
                raise ValueError(f"tree mask must be [n={n}, m] with n <= m <= cached + n, got {tuple(tree_mask.shape)}")
        if positions is None:
            positions = torch.arange(self.length, self.length + n, device=self.device).expand(batch, n)
        positions = torch.as_tensor(positions, dtype=torch.long, device=self.device)
        began = self._event()
        start = time.perf_counter()
        self.compiling = False
        with torch.inference_mode():
            logits = self._forward(tokens, positions, tree_mask, keep)
        if began is None:
            self.counter.book(time.perf_counter() - start, self.compiling)
        else:  # resolved when the counter's seconds are read (ForwardCounter)
            self.counter.pending.append((began, self._event(), self.compiling))
        self.counter.calls += 1
        self.counter.tokens += batch * n
        return logits

    def _event(self):
        """A timing event recorded now on the device's current stream, on CUDA, where a forward
        returns before the device has run it; None elsewhere: a forward that returned is done,
        and the host clock times it. (A CPU test passes fake events here.)"""
        if self.device.type != "cuda":
            return None
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def feed_uncached(self, sequence: list[int], keep: int = 1) -> torch.Tensor:
        """Feed the part of ``sequence`` (one row) that the cache lacks; logits [keep, V]."""
        new = sequence[self.length:]
        if not new:
            raise ValueError("nothing to feed: the cache already holds the whole sequence")
        return self.feed(torch.tensor([new]), keep=keep)[0]
