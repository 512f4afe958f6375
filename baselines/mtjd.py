"""Multi-token joint decoding (MTJD), the quality reference MTAD approximates
(docs/decoders.md#mtjd-multi-token-joint-decoding, #mtad-per-block-guarantee).

Per block of gamma tokens, the target's most likely block under its processed distribution,
argmax_x p~(x_1:gamma | c), found by beam search on the target alone (one batched target call
per depth). The search is exact when ``width >= |V|^(gamma-1)`` (every prefix is kept), which
the toy models allow; gamma = 1 is greedy decoding. Deterministic and slow by design.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtad.decoding.base import Block, Context, Decoder
from mtad.decoding.chain import missing_context
from mtad.ranges import Int, ranged
from mtad.runners.base import ROW_SELECTION


@dataclass
class MTJD(Decoder):
    name = "mtjd"
    version = 2  # 2: always width beams (dead ones at -inf), so a round reads once (issue 35)
    needs = frozenset({ROW_SELECTION})  # the target's beams: batched rows, selected each depth
    gamma: int = ranged(4, Int(min=1))
    width: int = ranged(4, Int(min=1, note="beams"))

    def sequences(self) -> int:
        return self.width

    def step(self, ctx: Context) -> Block:
        target = ctx.pair.target
        scores = ctx.probs(target.feed(missing_context(ctx, target)[None])[0, -1:]).log()  # [1, V] block log-probabilities
        beams = torch.empty(1, 0, dtype=torch.long, device=scores.device)
        parents = torch.zeros(1, dtype=torch.long, device=scores.device)
        for depth in range(self.gamma):
            if depth > 0:
                target.select_rows(parents)
                scores = scores[:, None] + ctx.probs(target.feed(beams[:, -1:])[:, -1]).log()
            flat = scores.flatten()
            # Always ``width`` beams: when fewer prefixes have mass, the extra beams score -inf and
            # stay dead (never ranked above a live one), so no shape depends on a read.
            scores, best = torch.topk(flat, min(self.width, flat.shape[0]))
            vocab = flat.shape[0] // beams.shape[0] if depth else flat.shape[0]
            parents, tokens = best // vocab, best % vocab
            beams = torch.cat([beams[parents], tokens[:, None]], dim=1)
        target.select_rows(parents[:1])  # the best beam; its last token is not in the cache
        return Block(beams[0].tolist())  # the round's one device read
