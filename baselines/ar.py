"""Autoregressive decoding with the target alone: the reference for every comparison
(docs/decoders.md#ar-autoregressive-sampling)."""

from __future__ import annotations

from dataclasses import dataclass

from mtad.decoding.base import Block, Context, Decoder
from mtad.decoding.sampling import draw


@dataclass
class AR(Decoder):
    name = "ar"
    version = 1

    def step(self, ctx: Context) -> Block:
        p = ctx.probs(ctx.pair.target.feed_uncached(ctx.tokens)[-1])
        return Block(draw(p, ctx.generator).view(1).tolist())  # the round's one device read
