"""SpecTr (Sun et al. 2023): k i.i.d. draft sequences of length gamma, verified position by
position with K-SEQ (docs/decoders.md#spectr-k-seq). Lossless.

At a position, with k' drafts still alive (they share the accepted prefix), P and Q are the
target and draft distributions there and rho* the smallest rho in [1, k'] with
1 - (1 - beta(rho))^k' <= rho * beta(rho), beta(rho) = sum min(Q, P / rho). Alive drafts are
tried in order, each accepted with probability min(1, P(x) / (rho Q(x))); the drafts that agree
with the accepted token stay alive. If none is accepted the new token comes from the SpecTr
residual norm(max(0, P - min(Q, P / rho) (1 - (1 - beta)^k') / beta)). With k = 1 this is SpD.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtad.decoding.base import Block, Context, Decoder
from mtad.decoding.sampling import first_accepted, residual, sample_one
from mtad.decoding.tree import TREE_NEEDS, commit_path, draft_tree, verify_tree
from mtad.ranges import Int, ranged

BISECTION_STEPS = 40


def _beta(p: torch.Tensor, q: torch.Tensor, rho: float) -> float:
    return float(torch.minimum(q, p / rho).sum())


def optimal_rho(p: torch.Tensor, q: torch.Tensor, k: int) -> float:
    """rho* by bisection: the condition fails below rho* and holds from rho* to k."""
    def holds(rho: float) -> bool:
        beta = _beta(p, q, rho)
        return 1 - (1 - beta) ** k <= rho * beta + 1e-12

    if k == 1 or holds(1.0):
        return 1.0
    low, high = 1.0, float(k)
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2
        low, high = (low, mid) if holds(mid) else (mid, high)
    return high


def kseq_plan(p: torch.Tensor, q: torch.Tensor, drafts: list[int]):
    """Acceptance probability of each alive draft token and the residual if all are rejected."""
    k = len(drafts)
    if k == 1:  # rho* = 1: exactly speculative sampling
        return [min(1.0, float(p[drafts[0]] / q[drafts[0]]))], residual(p, q)
    rho = optimal_rho(p, q, k)
    beta = _beta(p, q, rho)
    accept = [min(1.0, float(p[x] / (rho * q[x]))) for x in drafts]
    if beta <= 0:  # disjoint supports: nothing can be accepted, the residual is p itself
        return accept, p
    rest = (p - torch.minimum(q, p / rho) * (1 - (1 - beta) ** k) / beta).clamp_min(0)
    total = rest.sum()
    return accept, (rest / total if total > 0 else p)


@dataclass
class SpecTr(Decoder):
    name = "spectr"
    version = 1
    needs = TREE_NEEDS
    k: int = ranged(4, Int(min=1, note="drafts"))
    gamma: int = ranged(4, Int(min=1))

    def step(self, ctx: Context) -> Block:
        tree = draft_tree(ctx, [self.k] + [1] * (self.gamma - 1), replacement=True)
        p, p_nodes = verify_tree(ctx, tree)
        branches = [tree.path(leaf) for leaf in range(len(tree)) if tree.depths[leaf] == self.gamma - 1]
        alive, q, accepted = list(range(len(branches))), tree.q[-1], 0
        while accepted < self.gamma:
            tokens = [tree.tokens[branches[j][accepted]] for j in alive]
            accept, rejected_all = kseq_plan(p, q, tokens)
            chosen = first_accepted(alive, accept, ctx.generator, ctx.pair.device)
            if chosen is None:
                p = rejected_all
                break
            token = tree.tokens[branches[chosen][accepted]]
            alive = [chosen] + [j for j in alive if j != chosen and tree.tokens[branches[j][accepted]] == token]
            node = branches[chosen][accepted]
            p, q = p_nodes[node], tree.q.get(node)
            accepted += 1
        y = sample_one(p, ctx.generator)
        path = branches[alive[0]][:accepted]
        commit_path(ctx, tree, path, last_level=self.gamma - 1)
        return Block([tree.tokens[i] for i in path] + [y], accepted=accepted, drafted=self.gamma)
