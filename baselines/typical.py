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

from mtad.decoding.chain import commit_prefix, draft_chain, verify_chain
from mtad.decoding.base import Block, Context, Decoder
from mtad.ranges import Int, OneOf, Real, ranged
from mtad.decoding.sampling import sample_one

BONUS_RULES = ("sample", "argmax", "typical")


def typical_thresholds(pi: torch.Tensor, epsilon: float, delta: float) -> torch.Tensor:
    entropy = -(pi * torch.log(pi + 1e-5)).sum(-1)
    return torch.clamp(delta * torch.exp(-entropy), max=epsilon)


@dataclass
class Typical(Decoder):
    name = "typical"
    version = 1
    gamma: int = ranged(4, Int(min=1))
    epsilon: float = ranged(0.09, Real(min=0))  # Medusa's posterior_threshold as medusa_generate passes it
    delta: float = ranged(0.3, Real(min=0))     # Medusa's posterior_alpha
    bonus: str = ranged("sample", OneOf(BONUS_RULES))

    def step(self, ctx: Context) -> Block:
        x, _ = draft_chain(ctx, self.gamma)
        logits = verify_chain(ctx, x).float()
        if ctx.sampling.greedy:
            argmax = logits.argmax(-1)
            passes = [int(argmax[i]) == t for i, t in enumerate(x)]
        else:
            pi = (logits / ctx.sampling.temperature).softmax(-1)
            thresholds = typical_thresholds(pi, self.epsilon, self.delta)
            passes = [bool(pi[i, t] > thresholds[i]) for i, t in enumerate(x)]
        accepted = passes.index(False) if False in passes else self.gamma
        y = self._bonus(ctx, logits[accepted])
        commit_prefix(ctx, accepted)
        return Block(x[:accepted] + [y], accepted=accepted, drafted=self.gamma)

    def _bonus(self, ctx: Context, logits: torch.Tensor) -> int:
        if ctx.sampling.greedy or self.bonus == "argmax":
            return int(logits.argmax())
        if self.bonus == "sample":
            return sample_one(ctx.probs(logits), ctx.generator)
        pi = (logits / ctx.sampling.temperature).softmax(-1)
        truncated = pi.masked_fill(pi < typical_thresholds(pi, self.epsilon, self.delta), 0)
        return sample_one(truncated, ctx.generator) if truncated.sum() > 0 else int(pi.argmax())
