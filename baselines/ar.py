"""Autoregressive decoding with the target alone: the reference for every comparison (spec 2)."""

from __future__ import annotations

from dataclasses import dataclass

from mtad.decoding import Block, Context, Decoder, register
from mtad.sampling import sample_one


@register
@dataclass
class AR(Decoder):
    name = "ar"

    def step(self, ctx: Context) -> Block:
        p = ctx.probs(ctx.engine.target.feed_uncached(ctx.tokens)[-1])
        return Block([sample_one(p, ctx.generator)])
