"""MTAD: multi-token assisted decoding (Qin et al., ICLR 2025), docs/decoders.md#mtad.

Proposer: beam sampling on the draft keeps W sampled gamma-token beams and proposes the most
likely one (with ``beam_norm=joint``; ``repo`` ranks by the authors' renormalised weights).
Acceptance: the target scores the block in one call; the LONGEST prefix whose joint likelihood
ratio log p(x_1:d) - log q(x_1:d) exceeds log tau is accepted, then one token is sampled from
the plain target distribution at the next position (no residual). Lossy by design; tau = inf
is exactly AR sampling and a greedy target gives exactly target greedy decoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mtad.decoding.chain import commit_prefix, verify_chain
from mtad.decoding.base import Block, Context, Decoder
from mtad.ranges import FLAG, Int, OneOf, Real, ranged
from mtad.decoding.sampling import sample, sample_one, supported_draws
from mtad.runners.base import ROW_SELECTION

BEAM_NORMS = ("joint", "repo")
ACCEPT_RULES = ("longest", "first_fail")


@dataclass
class BeamDraft:
    tokens: list[int]            # the chosen beam x_1..x_gamma
    log_q: torch.Tensor          # [gamma] log q~(x_i | c, x_<i) of the chosen beam
    beams: torch.Tensor          # [W', gamma] every final beam (W' < W only without replacement)
    beam_log_q: torch.Tensor     # [W'] draft joint log-probability of each final beam


def beam_weights(values: torch.Tensor, beam_norm: str) -> torch.Tensor:
    """Normalised beam weights from the sampled beams' (joint) probabilities.

    ``joint`` is the intended p / sum(p), so weights stay proportional to draft joint
    probabilities; ``repo`` reproduces the authors' log_softmax applied to probabilities,
    i.e. softmax(p), which flattens the weights towards uniform (docs/decoders.md#mtad-beam-sampling-draft).
    """
    return values / values.sum() if beam_norm == "joint" else values.softmax(0)


def beam_sample(ctx: Context, gamma: int, width: int, replacement: bool, beam_norm: str) -> BeamDraft:
    """Beam sampling on the draft (docs/decoders.md#mtad-beam-sampling-draft). All beams run in one
    batched draft call per step; on return the draft cache holds the context plus the chosen
    beam's first gamma-1 tokens."""
    draft = ctx.pair.draft
    q1 = ctx.probs(draft.feed_uncached(ctx.tokens)[-1])
    first = sample(q1, ctx.generator, supported_draws(q1, width, replacement), replacement)
    beams = first[:, None]
    log_q = q1[first].log()[:, None]
    weights = beam_weights(q1[first], beam_norm)
    parents = torch.zeros(len(first), dtype=torch.long, device=first.device)  # step 1: all from one row
    for step in range(2, gamma + 1):
        draft.select_rows(parents)
        Q = ctx.probs(draft.feed(beams[:, -1:])[:, -1])                  # [beams, V]
        joint = (weights[:, None] * Q).flatten()                         # proportional to beam joints
        picks = sample(joint, ctx.generator, supported_draws(joint, width, replacement), replacement)
        parents, new = picks // Q.shape[1], picks % Q.shape[1]
        beams = torch.cat([beams[parents], new[:, None]], dim=1)
        log_q = torch.cat([log_q[parents], Q[parents, new].log()[:, None]], dim=1)
        weights = beam_weights(joint[picks], beam_norm)
    best = int(weights.argmax())
    if gamma > 1:
        draft.select_rows(parents[best:best + 1])
    return BeamDraft(beams[best].tolist(), log_q[best], beams, log_q.sum(1))


def accepted_length(log_ratio: torch.Tensor, log_tau: float, rule: str) -> int:
    """L from the per-token log(p/q) of a draft block.

    ``longest``: the largest d with sum_{i<=d} log(p_i/q_i) > log tau (a prefix may fail and a
    longer one pass again); ``first_fail``: the number of leading prefixes that pass.
    """
    passes = (log_ratio.cumsum(0) > log_tau).tolist()
    if rule == "first_fail":
        return passes.index(False) if False in passes else len(passes)
    return max((d + 1 for d, ok in enumerate(passes) if ok), default=0)


@dataclass
class MTAD(Decoder):
    name = "mtad"
    version = 1
    needs = frozenset({ROW_SELECTION})  # the draft's beams: batched rows, selected each step
    gamma: int = ranged(4, Int(min=1))
    width: int = ranged(4, Int(min=1, note="beam width W"))
    tau: float = ranged(0.5, Real(above=0, max=math.inf, note="inf: exactly AR"))
    replacement: bool = ranged(True, FLAG)
    accept_rule: str = ranged("longest", OneOf(ACCEPT_RULES))
    beam_norm: str = ranged("joint", OneOf(BEAM_NORMS))

    def step(self, ctx: Context) -> Block:
        draft = beam_sample(ctx, self.gamma, self.width, self.replacement, self.beam_norm)
        x = draft.tokens
        p = ctx.probs(verify_chain(ctx, x))
        log_ratio = p[torch.arange(self.gamma, device=p.device), torch.tensor(x, device=p.device)].log() - draft.log_q.to(p.device)
        accepted = accepted_length(log_ratio, math.log(self.tau), self.accept_rule)
        y = sample_one(p[accepted], ctx.generator)
        commit_prefix(ctx, accepted)
        return Block(x[:accepted] + [y], accepted=accepted, drafted=self.gamma)
