"""The processed next-token distribution shared by every decoder (docs/decoders.md#processed-distribution).

Draft and target logits go through the same function, so "lossless" means: equal in
distribution to autoregressive sampling from ``process(target logits)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtad.ranges import Int, Real, check_ranges, ranged

# Bumped with any change to what ``process``, the samplers or the residual compute (every decoder's
# tokens go through them): part of every run id (mtad/job/harness.py, mtad/job/records.py).
SAMPLING_VERSION = 1


@dataclass(frozen=True)
class SamplingConfig:
    """Temperature, top-k and top-p, applied identically to draft and target.

    ``temperature == 0`` means greedy: the processed distribution is one-hot on the argmax.
    ``top_k == 0`` disables top-k; ``top_p == 1`` disables top-p.
    """

    temperature: float = ranged(1.0, Real(min=0, note="0: greedy"))
    top_k: int = ranged(10, Int(min=0, note="0: off"))
    top_p: float = ranged(0.9, Real(above=0, max=1, note="1: off"))

    def __post_init__(self):
        check_ranges(self, "sampling")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def process(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Processed probabilities over the last dimension, in float32.

    Top-k keeps every logit tied with the k-th largest; top-p (on the top-k-filtered logits)
    removes a sorted position i >= 1 iff the cumulative probability before it exceeds top_p,
    so the first token and the one that crosses top_p are always kept.
    """
    logits = logits.float()
    if cfg.greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    z = logits / cfg.temperature
    top_k_active = 0 < cfg.top_k < z.shape[-1]
    if not top_k_active and cfg.top_p == 1:
        return z.softmax(-1)
    # Work on the surviving logits only, sorted descending, then scatter back: top-k leaves few.
    if top_k_active:
        kth = torch.topk(z, cfg.top_k, dim=-1).values[..., -1:]
        survivors = int((z >= kth).sum(-1).max())  # ties with the k-th value are kept
        values, index = torch.topk(z, survivors, dim=-1)
        values = values.masked_fill(values < kth, float("-inf"))
    else:
        values, index = torch.sort(z, dim=-1, descending=True)
    if cfg.top_p < 1:
        cum = values.softmax(-1).cumsum(-1)
        remove = torch.zeros_like(cum, dtype=torch.bool)
        remove[..., 1:] = cum[..., :-1] > cfg.top_p
        values = values.masked_fill(remove, float("-inf"))
    return torch.zeros_like(z).scatter(-1, index, values.softmax(-1))


def sample(probs: torch.Tensor, generator: torch.Generator, num: int = 1, replacement: bool = True) -> torch.Tensor:
    """Draw ``num`` token ids from each row of ``probs`` (float32, rows need not be normalised)."""
    return torch.multinomial(probs, num, replacement=replacement, generator=generator)


def sample_one(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One token id from a single distribution (1-D)."""
    return int(sample(probs, generator).item())


def uniform(generator: torch.Generator, device: torch.device | str) -> float:
    """One U ~ Uniform[0, 1) draw; accept with probability r iff ``uniform() < r``."""
    return float(torch.rand((), generator=generator, device=device).item())


def supported_draws(probs: torch.Tensor, k: int, replacement: bool) -> int:
    """How many of ``k`` draws can be made: without replacement no more than the tokens ``probs``
    supports (top-k/top-p may leave fewer than k, even one)."""
    return k if replacement else min(k, int((probs > 0).sum()))


def first_accepted(candidates: list, accept: list[float], generator: torch.Generator, device) -> object | None:
    """The first candidate, tried in order, whose fresh uniform falls below its acceptance
    probability; None if all are rejected. Lazy on purpose: one uniform per candidate tried and
    none after an acceptance, which fixes how much of the random stream a round consumes."""
    for candidate, probability in zip(candidates, accept):
        if uniform(generator, device) < probability:
            return candidate
    return None


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)); falls back to p when the residual has no mass (p == q up to rounding)."""
    r = (p - q).clamp_min(0)
    total = r.sum()
    return r / total if total > 0 else p
