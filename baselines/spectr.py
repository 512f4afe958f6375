"""SpecTr (Sun et al. 2023): k i.i.d. draft sequences of length gamma, verified position by
position with K-SEQ (docs/decoders.md#spectr-k-seq). Lossless.

At a position, with k' drafts still alive (they share the accepted prefix), P and Q are the
target and draft distributions there and rho* the smallest rho in [1, k'] with
1 - (1 - beta(rho))^k' <= rho * beta(rho), beta(rho) = sum min(Q, P / rho). Alive drafts are
tried in order, each accepted with probability min(1, P(x) / (rho Q(x))); the drafts that agree
with the accepted token stay alive. If none is accepted the new token comes from the SpecTr
residual norm(max(0, P - min(Q, P / rho) (1 - (1 - beta)^k') / beta)). With k = 1 this is SpD.

On the device (issue 35): which drafts are alive at a node depends on the drafted tokens only, so
every internal node's plan (rho*, acceptance probabilities, residual) is computed at once; one
uniform per (position, draft) decides, and the walk down the tree follows the decisions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from mtad.decoding.base import Block, Context, Decoder
from mtad.decoding.sampling import residual, uniforms
from mtad.decoding.tree import (TREE_NEEDS, Topology, draft_tree, finish_tree_round, greedy_round, next_rows,
                                verify_tree, walk)
from mtad.ranges import Int, ranged

# rho* to (k - 1) / (GRID - 1) / GRID: each round evaluates the condition at GRID points of the
# bracket left by the previous one
GRID, ROUNDS = 1024, 2


def optimal_rho(p: torch.Tensor, q: torch.Tensor, k) -> torch.Tensor:
    """rho* per row of p, q [..., V] for k' = ``k`` (an int or a tensor [...]), as p's dtype; never
    below rho* (the condition holds at the value returned) and less than 3e-6 (k' - 1) above it.

    h(rho) = rho beta(rho) = sum_v min(rho Q(v), P(v)) is piecewise linear in rho, with kinks at
    rho = P(v)/Q(v): after one sort, cumulative sums give h anywhere by a binary search, so the
    condition can be tested at many rho at once. The condition fails below rho* and holds from
    rho* to k' (Bernoulli's inequality); each round keeps the first grid point where it holds."""
    p64, q64 = p.double(), q.double()
    k = torch.as_tensor(k, dtype=torch.float64, device=p.device).expand(p.shape[:-1])[..., None]
    kinks, order = torch.where(q64 > 0, p64 / q64, torch.inf).sort(-1)
    p_below = torch.nn.functional.pad(p64.gather(-1, order).cumsum(-1), (1, 0))  # P over the first i kinks
    q_above = q64.sum(-1, keepdim=True) - torch.nn.functional.pad(q64.gather(-1, order).cumsum(-1), (1, 0))

    def holds(rho):
        i = torch.searchsorted(kinks, rho, right=True)
        h = torch.addcmul(p_below.gather(-1, i), rho, q_above.gather(-1, i))
        return (1 - h / rho) ** k >= 1 - 1e-12 - h

    # round 1: GRID points from 1 to k'; later rounds: GRID points in (hi - step, hi]
    ladder = torch.arange(1 - GRID, 1, dtype=torch.float64, device=p.device)
    hi, step = k, (k - 1) / (GRID - 1)
    for _ in range(ROUNDS):
        grid = torch.addcmul(hi, step, ladder)
        hi = grid.gather(-1, holds(grid).byte().argmax(-1, keepdim=True))
        step = step / GRID
    return hi.clamp_min(1)[..., 0].to(p.dtype)  # a round that starts at rho = 1 may go below it


def kseq_plan(p: torch.Tensor, q: torch.Tensor, drafts, alive: torch.Tensor | None = None):
    """For p, q [..., V] and the drafts' tokens [..., k] (``alive`` bool [..., k]: the ones still
    alive, all by default): each alive draft's acceptance probability [..., k] (0 for the others)
    and the residual if all are rejected [..., V]."""
    drafts = torch.as_tensor(drafts, device=p.device)
    alive = torch.ones_like(drafts, dtype=torch.bool) if alive is None else alive
    k = alive.sum(-1, keepdim=True)
    rho = torch.as_tensor(optimal_rho(p, q, k[..., 0]), dtype=p.dtype, device=p.device)[..., None]
    ratio = p.gather(-1, drafts) / (rho * q.gather(-1, drafts))
    accept = torch.where(alive, ratio.clamp_max(1), 0)
    overlap = torch.minimum(q, p / rho)
    beta = overlap.sum(-1, keepdim=True)
    # beta = 0 (disjoint supports): 0/0 makes the residual NaN, and the fallback below is p itself
    rest = (p - overlap * ((1 - (1 - beta) ** k) / beta)).clamp_min(0)
    total = rest.sum(-1, keepdim=True)
    rest = torch.where(total > 0, rest / total, p)
    return accept, torch.where(k == 1, residual(p, q), rest)  # k' = 1: rho* = 1, exactly SpD's residual


@functools.lru_cache(maxsize=32)
def _position_rows(t: Topology, k: int) -> torch.Tensor:
    """Long [rows, k]: for each internal row, the rows of all k drafts' nodes at the next position."""
    return (1 + t.row_level[:, None] * k + torch.arange(k, device=t.row_level.device))


@dataclass
class SpecTr(Decoder):
    name = "spectr"
    version = 2  # 2: the round runs on the device, rho* without reads, uniforms drawn at once (issue 35)
    needs = TREE_NEEDS
    k: int = ranged(4, Int(min=1, note="drafts"))
    gamma: int = ranged(4, Int(min=1))

    def sequences(self) -> int:
        return 1 + self.k * self.gamma  # the row and every draft's node

    def step(self, ctx: Context) -> Block:
        tree = draft_tree(ctx, [self.k] + [1] * (self.gamma - 1), replacement=True)
        logits = verify_tree(ctx, tree)
        if ctx.sampling.greedy:
            return greedy_round(ctx, tree, logits)
        t, k, support = tree.topology, self.k, tree.support
        p = ctx.probs(logits)  # [1 + N, V]: row 0 the root, row 1 + t k + j draft j at position t
        pc = support.compact(p)  # the plan works on the drafts' ids and one column for the rest
        drafts = tree.tokens.view(self.gamma, k)
        # agree[t, i, j]: drafts i and j are equal up to position t. At the root every draft is
        # alive; at draft i's node of position t, the drafts that agree with it up to there.
        agree = (drafts[:, :, None] == drafts[:, None, :]).cumprod(0).bool()
        alive = torch.cat([t.real_child[:1], agree[:-1].flatten(0, 1)])  # the root's row: k Trues
        accept, rejected_all = kseq_plan(pc[: t.rows], support.compact(tree.q), support.column[drafts][t.row_level], alive)
        # one uniform per (position, draft): a walk meets one node per position
        u = uniforms(ctx.generator, self.gamma * k, p.device).view(self.gamma, k)[t.row_level]
        row = walk(t, next_rows(t, u < accept, _position_rows(t, k)))
        y = support.draw(torch.cat([rejected_all, pc[t.rows:]]).index_select(0, row), p.index_select(0, row),
                         ctx.generator)
        return finish_tree_round(ctx, tree, row, y)
