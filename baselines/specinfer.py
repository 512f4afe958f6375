"""SpecInfer (Miao et al. 2024): a static token tree with i.i.d. children, verified by
multi-step speculative sampling (MSS), docs/decoders.md#specinfer-tree-speculative-sampling. Lossless.

At each tree node the children are tried in their sampled order: child s is accepted with
probability min(1, P(s)/Q(s)); on rejection P <- norm(max(0, P - Q)). If every child is rejected
the new token is drawn from the final P; after a full-depth accept, from the leaf's p.

On the device (issue 35): the plan of every internal node (each child's acceptance probability
given that the earlier ones were rejected, and P after all are rejected) is computed for all nodes
at once; one uniform per (depth, child) decides, and the walk down the tree follows the decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mtad.decoding.base import Block, Context, Decoder
from mtad.decoding.sampling import residual, uniforms
from mtad.decoding.tree import TREE_NEEDS, draft_tree, finish_tree_round, greedy_round, next_rows, verify_tree, walk
from mtad.ranges import Each, Int, ranged


def remove_candidate(q: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """The proposal of the next candidate drawn without replacement: q [..., V] without ``token``
    [..., 1], renormalised (left at 0 when nothing is left)."""
    q = q.scatter(-1, token, 0.0)
    total = q.sum(-1, keepdim=True)
    return torch.where(total > 0, q / total, q)


def mss_plan(p: torch.Tensor, q: torch.Tensor, candidates, without_replacement: bool,
             real: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For p, q [..., V] and candidates [..., k] tried in order: the acceptance probability of each
    given that the earlier ones were rejected [..., k], and the distribution of the new token when
    all are rejected [..., V]. With candidates drawn without replacement (MCSS), each rejection
    first subtracts the q the candidate was drawn from, then removes the candidate from q
    (docs/decoders.md#mcss-candidates-without-replacement: the order matters).

    Without replacement, a candidate the current q gives no mass (MCSS's draws beyond q's support)
    is never accepted and changes neither p nor q; so is, either way, one marked False in ``real``
    (a padded slot). The probabilities come from the gathered values at the end, not per candidate:
    fewer host ops (issue 35)."""
    candidates = torch.as_tensor(candidates, device=p.device)
    slots = candidates.split(1, dim=-1)
    real = [None] * len(slots) if real is None else real.split(1, dim=-1)
    px, qx, drawn = [], [], []
    for x, real_x in zip(slots, real):
        px.append(p.gather(-1, x))
        qx.append(q.gather(-1, x))
        if without_replacement:
            drawn.append(qx[-1] > 0 if real_x is None else (qx[-1] > 0) & real_x)
        else:  # drawn from q itself, so q(x) > 0
            drawn.append(torch.ones_like(x, dtype=torch.bool) if real_x is None else real_x)
        p = torch.where(drawn[-1], residual(p, q), p)
        if without_replacement:
            q = torch.where(drawn[-1], remove_candidate(q, x), q)
    drawn = torch.cat(drawn, -1)
    accept = torch.where(drawn, torch.cat(px, -1) / torch.cat(qx, -1), 0).clamp_max(1)
    return accept, p


@dataclass
class SpecInfer(Decoder):
    name = "specinfer"
    version = 2  # 2: the round runs on the device, uniforms drawn at once per (depth, child) (issue 35)
    needs = TREE_NEEDS
    k_config: list[int] = ranged(default_factory=lambda: [4, 2, 2], range=Each(Int(min=1)))  # children per depth
    replacement = True  # children i.i.d. from q; MCSS draws them without replacement

    def __post_init__(self):
        self.k_config = list(self.k_config) if isinstance(self.k_config, (list, tuple)) else self.k_config
        super().__post_init__()

    def sequences(self) -> int:
        # the row and every node: k_1 + k_1 k_2 + ...
        return 1 + sum(math.prod(self.k_config[: depth + 1]) for depth in range(len(self.k_config)))

    def step(self, ctx: Context) -> Block:
        tree = draft_tree(ctx, self.k_config, self.replacement)
        logits = verify_tree(ctx, tree)
        if ctx.sampling.greedy:
            return greedy_round(ctx, tree, logits)
        t, support = tree.topology, tree.support
        # [1 + N, V]: row 0 the root, row 1 + i node i; MCSS's pruned nodes (never reached) at 0
        p = tree.on_all_rows(ctx.probs(logits), 0.0)
        pc = support.compact(p)  # the plan works on the drafts' ids and one column for the rest
        accept, rejected_all = mss_plan(pc[: t.rows], support.compact(tree.q), support.column[tree.tokens[t.child_nodes]],
                                        without_replacement=not self.replacement, real=t.real_child)
        # one uniform per (depth, child): a walk meets one node per depth
        u = uniforms(ctx.generator, t.depth * t.child_nodes.shape[1], p.device).view(t.depth, -1)[t.row_level]
        row = walk(t, next_rows(t, u < accept, t.child_rows))
        # the new token: from P after every child was rejected, or from p at the leaf
        y = support.draw(torch.cat([rejected_all, pc[t.rows:]]).index_select(0, row), p.index_select(0, row),
                         ctx.generator)
        return finish_tree_round(ctx, tree, row, y)
