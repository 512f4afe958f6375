"""Typical acceptance (Medusa, Cai et al. 2024) with a draft model, docs/decoders.md#typical-acceptance. Lossy.

A chain of gamma draft tokens; the target's temperature-scaled, UNFILTERED distribution pi_i
judges each: x_i passes iff pi_i(x_i) > min(epsilon, delta * exp(-H(pi_i))), H with Medusa's
+1e-5 inside the log. The longest all-pass prefix is accepted. The new token (``bonus``) is
``sample`` (from the processed target distribution, comparable with the other decoders),
``argmax`` (Medusa's fast path) or ``typical`` (pi truncated to pi >= threshold). At
temperature 0 a draft token passes iff it is the target argmax (target greedy decoding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtad.decoding.base import Block, Context, Decoder
from mtad.decoding.chain import draft_chain, finish_round, verify_chain
from mtad.decoding.sampling import draw, one_hot
from mtad.ranges import Int, OneOf, Real, ranged

BONUS_RULES = ("sample", "argmax", "typical")


def typical_thresholds(pi: torch.Tensor, epsilon: float, delta: float) -> torch.Tensor:
    entropy = -(pi * torch.log(pi + 1e-5)).sum(-1)
    return torch.clamp(delta * torch.exp(-entropy), max=epsilon)


@dataclass
class Typical(Decoder):
    name = "typical"
    version = 2  # 2: bonus 'typical' with nothing above the threshold draws (from the argmax) too (issue 35)
    gamma: int = ranged(4, Int(min=1))
    epsilon: float = ranged(0.09, Real(min=0))  # Medusa's posterior_threshold as medusa_generate passes it
    delta: float = ranged(0.3, Real(min=0))     # Medusa's posterior_alpha
    bonus: str = ranged("sample", OneOf(BONUS_RULES))

    def step(self, ctx: Context) -> Block:
        x, _ = draft_chain(ctx, self.gamma)
        logits = verify_chain(ctx, x).float()
        if ctx.sampling.greedy:
            passes = logits[:-1].argmax(-1) == x
        else:
            pi = (logits / ctx.sampling.temperature).softmax(-1)
            thresholds = typical_thresholds(pi, self.epsilon, self.delta)
            passes = pi[:-1].gather(-1, x[:, None])[:, 0] > thresholds[:-1]
        accepted = passes.cumprod(0).sum()  # the longest all-pass prefix, on the device
        y = self._bonus(ctx, logits.index_select(0, accepted.view(1))[0])
        return finish_round(ctx, accepted, x, y)

    def _bonus(self, ctx: Context, logits: torch.Tensor) -> torch.Tensor:
        if ctx.sampling.greedy or self.bonus == "argmax":
            return logits.argmax()
        if self.bonus == "sample":
            return draw(ctx.probs(logits), ctx.generator)
        pi = (logits / ctx.sampling.temperature).softmax(-1)
        truncated = pi.masked_fill(pi < typical_thresholds(pi, self.epsilon, self.delta), 0)
        # nothing above the threshold: the argmax, drawn from its one-hot (chosen by ``where``, not
        # by reading the mass; the draw takes random numbers in this case too)
        argmax = one_hot(pi.argmax(), pi)
        return draw(torch.where(truncated.sum() > 0, truncated, argmax), ctx.generator)
