"""Chain drafting and single-sequence verification, shared by the chain decoders (spd, mtad, ...)."""

from __future__ import annotations

import torch

from mtad.decoding.base import Context
from mtad.decoding.sampling import sample_one


def draft_chain(ctx: Context, gamma: int) -> tuple[list[int], torch.Tensor]:
    """Sample ``gamma`` tokens autoregressively from the draft; returns them and their full
    processed distributions q [gamma, V] (the residual needs the whole vectors)."""
    draft = ctx.pair.draft
    tokens: list[int] = []
    qs = []
    for _ in range(gamma):
        q = ctx.probs(draft.feed_uncached(ctx.tokens + tokens)[-1])
        tokens.append(sample_one(q, ctx.generator))
        qs.append(q)
    return tokens, torch.stack(qs)


def verify_chain(ctx: Context, tokens: list[int]) -> torch.Tensor:
    """One target call over the uncached context plus ``tokens``: raw logits [len+1, V] at the
    positions that predict each token and the one after them."""
    return ctx.pair.target.feed_uncached(ctx.tokens + tokens, keep=len(tokens) + 1)


def commit_prefix(ctx: Context, accepted: int) -> None:
    """Crop both caches to the context plus the accepted draft tokens
    (docs/decoders.md#chain-rounds-commit-and-crop)."""
    keep = len(ctx.tokens) + accepted
    ctx.pair.target.crop(keep)
    ctx.pair.draft.crop(min(ctx.pair.draft.length, keep))
