"""SpecInfer (Miao et al. 2024): a static token tree with i.i.d. children, verified by
multi-step speculative sampling (MSS), docs/decoders.md#specinfer-tree-speculative-sampling. Lossless.

At each tree node the children are tried in their sampled order: child s is accepted with
probability min(1, P(s)/Q(s)); on rejection P <- norm(max(0, P - Q)). If every child is rejected
the new token is drawn from the final P; after a full-depth accept, from the leaf's p.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtad.decoding.base import Block, Context, Decoder
from mtad.decoding.sampling import first_accepted, residual, sample_one
from mtad.decoding.tree import TREE_NEEDS, commit_path, draft_tree, verify_tree
from mtad.ranges import Each, Int, ranged


def remove_candidate(q: torch.Tensor, token: int) -> torch.Tensor:
    """The proposal of the next candidate drawn without replacement: q without ``token``."""
    q = q.clone()
    q[token] = 0
    total = q.sum()
    return q / total if total > 0 else q


def mss_plan(p: torch.Tensor, q: torch.Tensor, candidates: list[int], without_replacement: bool):
    """Acceptance probability of each candidate given that the earlier ones were rejected, and the
    distribution of the new token when all are rejected. With candidates drawn without
    replacement (MCSS), each rejection first subtracts the q the candidate was drawn from, then
    removes the candidate from q (docs/decoders.md#mcss-candidates-without-replacement: the order matters)."""
    accept = []
    for token in candidates:
        accept.append(min(1.0, float(p[token] / q[token])) if q[token] > 0 else 0.0)
        p = residual(p, q)
        if without_replacement:
            q = remove_candidate(q, token)
    return accept, p


@dataclass
class SpecInfer(Decoder):
    name = "specinfer"
    version = 1
    needs = TREE_NEEDS
    k_config: list[int] = ranged(default_factory=lambda: [4, 2, 2], range=Each(Int(min=1)))  # children per depth
    replacement = True  # children i.i.d. from q; MCSS draws them without replacement

    def __post_init__(self):
        self.k_config = list(self.k_config) if isinstance(self.k_config, (list, tuple)) else self.k_config
        super().__post_init__()

    def step(self, ctx: Context) -> Block:
        tree = draft_tree(ctx, self.k_config, self.replacement)
        p, p_nodes = verify_tree(ctx, tree)
        node, path = -1, []
        for _ in self.k_config:
            children = tree.children(node)
            accept, rejected_all = mss_plan(p, tree.q[node], [tree.tokens[c] for c in children],
                                            without_replacement=not self.replacement)
            chosen = first_accepted(children, accept, ctx.generator, ctx.pair.device)
            if chosen is None:
                p = rejected_all
                break
            path.append(chosen)
            node, p = chosen, p_nodes[chosen]
        y = sample_one(p, ctx.generator)
        commit_path(ctx, tree, path, last_level=len(self.k_config) - 1)
        return Block([tree.tokens[i] for i in path] + [y], accepted=len(path), drafted=len(self.k_config))
