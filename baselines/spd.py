"""Speculative sampling (Leviathan et al. 2023; Chen et al. 2023), docs/decoders.md#spd-speculative-sampling.

Lossless: the output is distributed exactly as AR sampling from the processed target
distribution. At temperature 0 the one-hot distributions make the same rule greedy
verification, so the output equals target greedy decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtad.decoding.chain import commit_prefix, draft_chain, verify_chain
from mtad.decoding.base import Block, Context, Decoder
from mtad.ranges import Int, ranged
from mtad.decoding.sampling import residual, sample_one, uniform


@dataclass
class SpD(Decoder):
    name = "spd"
    version = 1
    gamma: int = ranged(4, Int(min=1))

    def step(self, ctx: Context) -> Block:
        x, q = draft_chain(ctx, self.gamma)
        p = ctx.probs(verify_chain(ctx, x))
        accepted = 0
        while accepted < self.gamma:
            i, token = accepted, x[accepted]
            if uniform(ctx.generator, ctx.pair.device) < float(p[i, token] / q[i, token]):
                accepted += 1
            else:
                break
        if accepted < self.gamma:
            bonus_dist = residual(p[accepted], q[accepted])
        else:
            bonus_dist = p[self.gamma]
        y = sample_one(bonus_dist, ctx.generator)
        commit_prefix(ctx, accepted)
        return Block(x[:accepted] + [y], accepted=accepted, drafted=self.gamma)
