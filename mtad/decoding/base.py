"""The decoder protocol and the one generation loop all decoders share.

A decoder is a strategy: ``step(ctx)`` runs one draft-and-verify round on the pair and
returns a ``Block`` of tokens to commit. The loop owns stopping (EOS anywhere in a block,
``max_new_tokens``), truncation and the per-generation statistics.

Glossary (the math of each decoder: docs/decoders.md):
- drafted: draft positions a round offers for verification (chain length, or tree depth);
- accepted: leading tokens of a block that came from the draft (always a prefix);
- bonus: the one token the target adds after the accepted ones, so every round emits >= 1;
- residual (recovered) distribution: norm(max(0, p - q)), what a lossless decoder samples the
  bonus from after a rejection (p target, q draft, both processed by ``mtad.decoding.sampling``);
- block efficiency: emitted tokens per target call (AR: 1);
- acceptance rate: accepted / drafted; per position: the same for each draft position.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch

from mtad.runners.pair import Pair
from mtad.errors import UserError
from mtad.ranges import check_ranges
from mtad.decoding.sampling import SamplingConfig, process


@dataclass
class Block:
    """What one decoder step emits: ``tokens`` = accepted draft tokens, then the decoder's own."""

    tokens: list[int]
    accepted: int = 0  # leading tokens of ``tokens`` that came from the draft
    drafted: int = 0   # draft positions proposed this step (chain length, or tree depth)


@dataclass
class Context:
    """State of one generation, handed to ``Decoder.step``."""

    pair: Pair
    tokens: list[int]  # committed: prompt, then emitted tokens
    sampling: SamplingConfig
    generator: torch.Generator
    state: dict = field(default_factory=dict)  # a decoder's own state between its steps
    # the loop's stopping conditions, for a decoder that runs a whole generation at once
    # (baselines/hf_assisted.py); the loop applies them to every decoder's blocks anyway
    max_new_tokens: int = 0
    stop_ids: frozenset[int] = frozenset()
    settled: Callable[[list[int]], bool] | None = None

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """The processed distribution of either model's logits (docs/decoders.md#processed-distribution)."""
        return process(logits, self.sampling)


class Decoder(ABC):
    """Base of all decoders. Sub-classes are dataclasses of their hyper-parameters."""

    name: ClassVar[str]
    version: ClassVar[int]  # bumped with any change to what the decoder generates (mtad/catalogue.py)
    # What it asks of the runners beyond one-row causal feeds and crops (mtad/runners/base.py
    # capabilities): a backend without them is refused before any model loads.
    needs: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self):
        # each hyper-parameter's range is stated beside its default (mtad/ranges.py); a sub-class
        # with checks of its own calls this first
        check_ranges(self, "decoder")

    def sequences(self) -> int:
        """The most branches a round holds in one model's cache at once: its batch rows (beams),
        or the committed row plus every tree node; 1 for a chain. A backend that gives each its
        own slot (llama.cpp's sequence ids) refuses a decoder that needs more than it has, before
        any model loads (``Backend.check_sequences``)."""
        return 1

    @abstractmethod
    def step(self, ctx: Context) -> Block:
        """One round. On entry the target cache holds at most ``ctx.tokens[:-1]`` and the draft
        cache a prefix of ``ctx.tokens``; on exit both hold at most the new ``tokens[:-1]``."""


def require(condition: bool, message: str) -> None:
    """Hyper-parameter validation with a one-line ``UserError``."""
    if not condition:
        raise UserError(message)


@dataclass
class GenerationStats:
    new_tokens: int = 0
    target_calls: int = 0
    draft_calls: int = 0
    target_tokens_fed: int = 0
    draft_tokens_fed: int = 0
    draft_proposed: int = 0          # draft positions proposed (depth for trees)
    draft_accepted: int = 0          # emitted tokens that came from the draft
    proposed_per_position: list[int] = field(default_factory=list)
    accepted_per_position: list[int] = field(default_factory=list)
    wall_seconds: float = 0.0        # generate() time, compile time excluded
    target_seconds: float = 0.0
    draft_seconds: float = 0.0
    compile_seconds: float = 0.0     # calls that compiled a new shape (static backend), both models

    @property
    def block_efficiency(self) -> float:
        """Mean emitted tokens per target call."""
        return self.new_tokens / self.target_calls if self.target_calls else 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.draft_accepted / self.draft_proposed if self.draft_proposed else 0.0

    @property
    def acceptance_per_position(self) -> list[float]:
        return [a / p if p else 0.0 for a, p in zip(self.accepted_per_position, self.proposed_per_position)]

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def forward_seconds(self) -> float:
        """Both models' forwards, prompt passes included: new_tokens / forward_seconds is the
        forward-only limit, the tokens/s if nothing else took time."""
        return self.target_seconds + self.draft_seconds

    @property
    def forward_share(self) -> float | None:
        """The share of the wall time spent in forwards: how close the loop comes to its
        forward-only limit. A yardstick that books its whole generation as target time
        (llamacpp_plain, hf_assisted) reads about 1."""
        return self.forward_seconds / self.wall_seconds if self.wall_seconds else None

    def record(self, block: Block, emitted: int) -> None:
        accepted = min(block.accepted, emitted)
        self.new_tokens += emitted
        self.draft_proposed += block.drafted
        self.draft_accepted += accepted
        for counts, upto in ((self.proposed_per_position, block.drafted), (self.accepted_per_position, accepted)):
            counts.extend([0] * (block.drafted - len(counts)))
            for d in range(upto):
                counts[d] += 1

    def add(self, other: "GenerationStats") -> None:
        """Accumulate another generation's counts (totals are ratios of sums)."""
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, list):  # per-position counts; generations may differ in depth
                setattr(self, f.name, [a + b for a, b in itertools.zip_longest(mine, theirs, fillvalue=0)])
            else:
                setattr(self, f.name, mine + theirs)

    @classmethod
    def from_dict(cls, values: dict) -> "GenerationStats":
        """Back from ``as_dict`` (derived values are recomputed, not read)."""
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for name in ("block_efficiency", "acceptance_rate", "acceptance_per_position", "tokens_per_second"):
            out[name] = getattr(self, name)
        return out


@dataclass
class Generation:
    tokens: list[int]       # new tokens only, truncated at the first stop token and max_new_tokens
    stop_reason: str        # "stop_token", "settled" or "max_new_tokens"
    stats: GenerationStats


def start(pair: Pair, prompt: list[int], sampling: SamplingConfig, seed: int) -> Context:
    """Reset both caches and counters and open a generation with its own seeded generator."""
    prompt = [int(t) for t in prompt]
    if not prompt:
        raise UserError("the prompt must hold at least one token")
    if max(prompt) >= pair.target.vocab_size or min(prompt) < 0:
        raise UserError(f"prompt token ids must lie in [0, {pair.target.vocab_size})")
    pair.reset()
    generator = torch.Generator(device=pair.device).manual_seed(int(seed))
    return Context(pair, prompt, sampling, generator)


def generate(pair: Pair, decoder: Decoder, prompt: list[int], *, max_new_tokens: int,
             sampling: SamplingConfig = SamplingConfig(), seed: int = 0,
             stop_ids: tuple[int, ...] | None = None,
             settled: Callable[[list[int]], bool] | None = None) -> Generation:
    """Decode from ``prompt`` token ids until a stop token or ``max_new_tokens``, or until
    ``settled(new_tokens)`` holds: a task's test that no continuation can change its score
    (``Task.stop_rule``). It must stay true once true; the output is cut at the first token
    where it holds, so every decoder stops at the same place in the same text."""
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    stop = set(pair.stop_ids if stop_ids is None else stop_ids)
    pair.require(decoder.needs, f"decoder {decoder.name!r}")
    pair.check_fits(len(prompt), max_new_tokens)
    ctx = start(pair, prompt, sampling, seed)
    ctx.max_new_tokens, ctx.stop_ids, ctx.settled = max_new_tokens, frozenset(stop), settled
    stats = GenerationStats()
    new: list[int] = []
    reason = "max_new_tokens"
    began = time.perf_counter()
    while len(new) < max_new_tokens:
        block = decoder.step(ctx)
        kept = block.tokens[: max_new_tokens - len(new)]
        for i, token in enumerate(kept):
            if token in stop:
                kept, reason = kept[: i + 1], "stop_token"
                break
        if settled is not None and settled(new + kept):
            # cut at the first prefix that settles (one test per token of this block, at most)
            n = next(n for n in range(1, len(kept) + 1) if settled(new + kept[:n]))
            if n < len(kept) or reason != "stop_token":
                kept, reason = kept[:n], "settled"
        ctx.tokens.extend(kept)
        new.extend(kept)
        stats.record(block, len(kept))
        if reason != "max_new_tokens":
            break
    if pair.device.type == "cuda":
        torch.cuda.synchronize(pair.device)
    ended = time.perf_counter()  # before the counters resolve their CUDA events (mtad/runners/base.py)
    stats.compile_seconds = pair.target.counter.compile_seconds + pair.draft.counter.compile_seconds
    stats.wall_seconds = ended - began - stats.compile_seconds
    for model, runner in (("target", pair.target), ("draft", pair.draft)):
        setattr(stats, f"{model}_calls", runner.counter.calls)
        setattr(stats, f"{model}_tokens_fed", runner.counter.tokens)
        setattr(stats, f"{model}_seconds", runner.counter.seconds)
    return Generation(new, reason, stats)
