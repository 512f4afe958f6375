"""Speculative sampling (Leviathan et al. 2023; Chen et al. 2023), docs/decoders.md#spd-speculative-sampling.

Lossless: the output is distributed exactly as AR sampling from the processed target
distribution. At temperature 0 the one-hot distributions make the same rule greedy
verification, so the output equals target greedy decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtad.decoding.base import Block, Context, Decoder
from mtad.decoding.chain import draft_chain, finish_round, verify_chain
from mtad.decoding.sampling import draw, residual, uniforms
from mtad.ranges import Int, ranged


@dataclass
class SpD(Decoder):
    name = "spd"
    version = 2  # 2: the gamma uniforms are drawn at once, before the bonus (issue 35)
    gamma: int = ranged(4, Int(min=1))

    def step(self, ctx: Context) -> Block:
        x, q = draft_chain(ctx, self.gamma)
        p = ctx.probs(verify_chain(ctx, x))  # [gamma + 1, V]
        # All on the device, one read at the end: test every position with its own uniform, and
        # L = the longest prefix with U_i < p_i(x_i) / q_i(x_i) (x_i ~ q_i, so q_i(x_i) > 0).
        u = uniforms(ctx.generator, self.gamma, p.device)
        ratio = p[:-1].gather(-1, x[:, None])[:, 0] / q.gather(-1, x[:, None])[:, 0]
        accepted = (u < ratio).cumprod(0).sum()
        # the bonus: from the residual at the first rejection (row L), from p_{gamma+1} after none
        bonus_dists = torch.cat([residual(p[:-1], q), p[-1:]])
        y = draw(bonus_dists.index_select(0, accepted.view(1))[0], ctx.generator)
        return finish_round(ctx, accepted, x, y)
