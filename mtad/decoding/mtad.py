"""MTAD: multi-token assisted decoding (Qin et al., ICLR 2025), docs/decoders.md#mtad.

Proposer: beam sampling on the draft keeps W sampled gamma-token beams and proposes the most
likely one (with ``beam_norm=joint``; ``repo`` ranks by the authors' renormalised weights).
Acceptance: the target scores the block in one call; the LONGEST prefix whose joint likelihood
ratio log p(x_1:d) - log q(x_1:d) exceeds log tau is accepted, then one token is sampled from
the plain target distribution at the next position (no residual). Lossy by design; tau = inf
is exactly AR sampling and a greedy target gives exactly target greedy decoding.

The whole round stays on the models' device and reads it once, at its end (``finish_round``):
beams, weights, the chosen beam and the accepted length are tensors the host never looks at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mtad.decoding.base import Block, Context, Decoder
from mtad.decoding.chain import finish_round, missing_context, verify_chain
from mtad.decoding.sampling import draw, draws, draws_without_replacement
from mtad.ranges import FLAG, Int, OneOf, Real, ranged
from mtad.runners.base import ROW_SELECTION

BEAM_NORMS = ("joint", "repo")
ACCEPT_RULES = ("longest", "first_fail")


@dataclass
class BeamDraft:
    tokens: torch.Tensor         # [gamma] the chosen beam x_1..x_gamma (long, on the device)
    log_q: torch.Tensor          # [gamma] log q~(x_i | c, x_<i) of the chosen beam
    beams: torch.Tensor          # [W, gamma] every final beam
    beam_log_q: torch.Tensor     # [W] draft joint log-probability of each final beam (-inf: not a real draw)


def pick(probs: torch.Tensor, width: int, replacement: bool, generator: torch.Generator):
    """``width`` ids from ``probs`` (1-D) and which are real draws. Without replacement a
    distribution that supports fewer ids than ``width`` leaves dead picks (False): the beams
    keep their number, so no shape depends on the data and nothing is read."""
    if replacement:
        ids = draws(probs, generator, width)
        return ids, torch.ones_like(ids, dtype=torch.bool)
    return draws_without_replacement(probs, generator, width)


def beam_weights(values: torch.Tensor, live: torch.Tensor, beam_norm: str) -> torch.Tensor:
    """Normalised beam weights from the sampled beams' (joint) probabilities; dead beams weigh 0.

    ``joint`` is the intended p / sum(p), so weights stay proportional to draft joint
    probabilities; ``repo`` reproduces the authors' log_softmax applied to probabilities,
    i.e. softmax(p) over the live beams, which flattens the weights towards uniform
    (docs/decoders.md#mtad-beam-sampling-draft).
    """
    if beam_norm == "joint":
        return values / values.sum()  # a dead beam's value is 0
    return values.masked_fill(~live, -math.inf).softmax(0)


def beam_sample(ctx: Context, gamma: int, width: int, replacement: bool, beam_norm: str) -> BeamDraft:
    """Beam sampling on the draft (docs/decoders.md#mtad-beam-sampling-draft). All beams run in one
    batched draft call per step; on return the draft cache holds the context plus the chosen
    beam's first gamma-1 tokens."""
    draft = ctx.pair.draft
    q1 = ctx.probs(draft.feed(missing_context(ctx, draft)[None])[0, -1])
    first, live = pick(q1, width, replacement, ctx.generator)
    beams = first[:, None]
    values = q1[first]
    log_q = values.log()[:, None]
    weights = beam_weights(values, live, beam_norm)
    parents = torch.zeros(width, dtype=torch.long, device=first.device)  # step 1: all from one row
    for _ in range(2, gamma + 1):
        draft.select_rows(parents)
        Q = ctx.probs(draft.feed(beams[:, -1:])[:, -1])                  # [W, V]
        joint = (weights[:, None] * Q).flatten()                         # proportional to beam joints
        picks, live = pick(joint, width, replacement, ctx.generator)
        parents, new = picks // Q.shape[1], picks % Q.shape[1]
        beams = torch.cat([beams[parents], new[:, None]], dim=1)
        log_q = torch.cat([log_q[parents], Q[parents, new].log()[:, None]], dim=1)
        weights = beam_weights(joint[picks], live, beam_norm)
    best = weights.argmax().view(1)
    if gamma > 1:
        draft.select_rows(parents[best])
    return BeamDraft(beams[best][0], log_q[best][0], beams, log_q.sum(1))


def accepted_length(log_ratio: torch.Tensor, log_tau: float, rule: str) -> torch.Tensor:
    """L (a 0-d long tensor, on the device) from the per-token log(p/q) of a draft block.

    ``longest``: the largest d with sum_{i<=d} log(p_i/q_i) > log tau (a prefix may fail and a
    longer one pass again); ``first_fail``: the number of leading prefixes that pass.
    """
    passes = log_ratio.cumsum(0) > log_tau
    if rule == "first_fail":
        return passes.cumprod(0).sum()
    depth = torch.arange(1, len(passes) + 1, device=passes.device)
    return (passes * depth).max()  # 0 when none passes


@dataclass
class MTAD(Decoder):
    name = "mtad"
    version = 2  # 2: beams drawn on the device by inverse CDF, with or without replacement (issue 35)
    needs = frozenset({ROW_SELECTION})  # the draft's beams: batched rows, selected each step
    gamma: int = ranged(4, Int(min=1))
    width: int = ranged(4, Int(min=1, note="beam width W"))
    tau: float = ranged(0.5, Real(above=0, max=math.inf, note="inf: exactly AR"))
    replacement: bool = ranged(True, FLAG)
    accept_rule: str = ranged("longest", OneOf(ACCEPT_RULES))
    beam_norm: str = ranged("joint", OneOf(BEAM_NORMS))

    def sequences(self) -> int:
        return self.width

    def step(self, ctx: Context) -> Block:
        draft = beam_sample(ctx, self.gamma, self.width, self.replacement, self.beam_norm)
        x = draft.tokens
        p = ctx.probs(verify_chain(ctx, x))  # [gamma + 1, V]
        log_ratio = p[:-1].gather(-1, x[:, None])[:, 0].log() - draft.log_q
        accepted = accepted_length(log_ratio, math.log(self.tau), self.accept_rule)
        y = draw(p.index_select(0, accepted.view(1))[0], ctx.generator)  # the plain target's next token
        return finish_round(ctx, accepted, x, y)
