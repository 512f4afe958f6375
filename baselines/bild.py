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
from mtad.decoding.sampling import draw

ROLLBACK_RULES = ("fixed", "official")


@dataclass
class BiLD(Decoder):
    name = "bild"
    version = 2  # 2: tokens drawn on the device, before the fallback/rollback tests read them (issue 35)
    fallback: float = ranged(0.6, Real(0, 1))
    rollback: float = ranged(5.0, Real(0, math.inf, note="inf: never roll back"))
    n_small: int = ranged(10, Int(min=1))
    rollback_rule: str = ranged("fixed", OneOf(ROLLBACK_RULES))

    def _token(self, ctx: Context, logits: torch.Tensor) -> torch.Tensor:
        """The next token from ``logits`` as a 0-d tensor on the device (not read here)."""
        return logits.argmax(-1) if ctx.sampling.greedy else draw(ctx.probs(logits), ctx.generator)

    def step(self, ctx: Context) -> Block:
        pending: list[int] = []
        if not ctx.state.pop("stay_large", False):
            while len(pending) < self.n_small:
                logits = ctx.pair.draft.feed_uncached(ctx.tokens + pending)[-1].float()
                # one read per draft step: whether the small model is confident, and its token
                # (drawn before the answer is known, and discarded on a fallback)
                confident = logits.softmax(-1).max() >= self.fallback
                confident, token = torch.stack([confident.long(), self._token(ctx, logits)]).tolist()
                if not confident:
                    break  # fall back: this step's small token is discarded
                pending.append(token)
        logits = ctx.pair.target.feed_uncached(ctx.tokens + pending, keep=len(pending) + 1).float()
        m, replacement, last = self._rollback(ctx, logits, pending)
        if m == len(pending):  # nothing rolled back: the large model's own next token follows
            return Block(pending + [replacement], accepted=len(pending), drafted=len(pending))
        if self.rollback_rule == "official" and replacement == pending[m]:
            return Block(pending + [last], accepted=len(pending), drafted=len(pending))
        commit_prefix(ctx, m)  # caches hold the new committed sequence minus its last token
        ctx.state["stay_large"] = True
        return Block(pending[:m] + [replacement], accepted=m, drafted=len(pending))

    def _rollback(self, ctx: Context, logits: torch.Tensor, pending: list[int]) -> tuple[int, int, int | None]:
        """In the round's one read after the large model's call: m, the index of the first small
        token to replace (len(pending) when none is), the large model's token at row m (its
        replacement, or the next token), and (``official`` rule) its token at the last row, for
        when the replacement equals the small token and the rollback is skipped."""
        n = len(pending)
        m = torch.tensor(n, device=logits.device)
        if pending:
            small = torch.tensor(pending, device=logits.device)
            flagged = -logits[:-1].log_softmax(-1).gather(-1, small[:, None])[:, 0] > self.rollback
            if self.rollback_rule == "fixed" and ctx.sampling.greedy:
                flagged &= logits[:-1].argmax(-1) != small
            m = torch.where(flagged.any(), flagged.long().argmax(), m)  # argmax: the first True
        tokens = [m, self._token(ctx, logits.index_select(0, m.view(1))[0])]
        if self.rollback_rule == "official" and pending:
            tokens.append(self._token(ctx, logits[-1]))
        values = torch.stack(tokens).tolist()
        return values[0], values[1], values[2] if len(values) > 2 else None
