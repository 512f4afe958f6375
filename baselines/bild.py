"""Big Little Decoder (Kim et al. 2023), decoder-only port, docs/decoders.md#bild-big-little-decoder. Lossy.

The small (draft) model runs until its max probability falls below ``fallback`` or it has
produced ``n_small`` tokens; the fallback step's token is discarded. The large (target) model
then checks the pending small tokens in one call and rolls back at the first one whose
cross-entropy -log p_L(z) exceeds ``rollback``, replacing it with its own token and staying in
charge for one more step. Without a rollback it appends its own next token. Policies use the
raw softmax (T=1); tokens are argmax at temperature 0, else sampled from the processed
distributions. ``rollback_rule``: ``fixed`` (greedy: the first flagged token that differs from
the large model's argmax; sampling: the first flagged token, always redrawn) or ``official``
(the original code: if the redrawn first flagged token equals the small one, the whole rollback
is skipped and later flagged tokens survive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mtad.decoding.chain import commit_prefix
from mtad.decoding.base import Block, Context, Decoder
from mtad.ranges import Int, OneOf, Real, ranged
from mtad.decoding.sampling import sample_one

ROLLBACK_RULES = ("fixed", "official")


@dataclass
class BiLD(Decoder):
    name = "bild"
    version = 1
    fallback: float = ranged(0.6, Real(0, 1))
    rollback: float = ranged(5.0, Real(0, math.inf, note="inf: never roll back"))
    n_small: int = ranged(10, Int(min=1))
    rollback_rule: str = ranged("fixed", OneOf(ROLLBACK_RULES))

    def _token(self, ctx: Context, logits: torch.Tensor) -> int:
        return int(logits.argmax()) if ctx.sampling.greedy else sample_one(ctx.probs(logits), ctx.generator)

    def step(self, ctx: Context) -> Block:
        pending: list[int] = []
        if not ctx.state.pop("stay_large", False):
            while len(pending) < self.n_small:
                logits = ctx.pair.draft.feed_uncached(ctx.tokens + pending)[-1].float()
                if float(logits.softmax(-1).max()) < self.fallback:
                    break  # fall back: this step's small token is discarded
                pending.append(self._token(ctx, logits))
        logits = ctx.pair.target.feed_uncached(ctx.tokens + pending, keep=len(pending) + 1).float()
        m, replacement = self._rollback(ctx, logits, pending)
        if m is None:
            return Block(pending + [self._token(ctx, logits[-1])], accepted=len(pending), drafted=len(pending))
        commit_prefix(ctx, m)  # caches hold the new committed sequence minus its last token
        ctx.state["stay_large"] = True
        return Block(pending[:m] + [replacement], accepted=m, drafted=len(pending))

    def _rollback(self, ctx: Context, logits: torch.Tensor, pending: list[int]) -> tuple[int | None, int | None]:
        """Index of the first small token to replace, and its replacement (None: keep them all)."""
        if not pending:
            return None, None
        log_p = logits[:-1].log_softmax(-1)
        flagged = [i for i, z in enumerate(pending) if -float(log_p[i, z]) > self.rollback]
        if self.rollback_rule == "fixed" and ctx.sampling.greedy:
            flagged = [i for i in flagged if int(logits[i].argmax()) != pending[i]]
        if not flagged:
            return None, None
        m = flagged[0]
        replacement = self._token(ctx, logits[m])
        if self.rollback_rule == "official" and replacement == pending[m]:
            return None, None
        return m, replacement

