"""Token-tree drafting and verification, shared by the tree decoders
(docs/decoders.md#token-trees-drafting-and-verification).

A tree is grown level by level from ``k_config`` = (k_1, ..., k_D): every node of level d-1 (the
root for d = 1) gets up to k_d children sampled from its draft distribution, in one batched
draft call per level with a tree attention mask. Nodes are stored level by level (BFS order);
a node's position id is ``len(context) + depth``. One target call scores the last committed
token and every node. Afterwards both caches keep only the context and the accepted path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtad.decoding.base import Context
from mtad.decoding.sampling import sample, supported_draws
from mtad.runners.base import KEPT_POSITIONS, TREE_MASKS

# What a decoder that drafts and verifies trees here asks of the runners (``Decoder.needs``):
# a level fed with a tree mask, the accepted path kept.
TREE_NEEDS = frozenset({TREE_MASKS, KEPT_POSITIONS})


@dataclass
class Tree:
    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)    # -1 for children of the root
    depths: list[int] = field(default_factory=list)     # 0 for children of the root
    q: dict[int, torch.Tensor] = field(default_factory=dict)  # draft distribution at each expanded node; -1 = root

    def __len__(self) -> int:
        return len(self.tokens)

    def children(self, node: int) -> list[int]:
        return [i for i, parent in enumerate(self.parents) if parent == node]

    def path(self, node: int) -> list[int]:
        """Node indices from the root's child down to ``node``."""
        out = []
        while node >= 0:
            out.append(node)
            node = self.parents[node]
        return out[::-1]

    def ancestor_mask(self, nodes: range | None = None) -> torch.Tensor:
        """Bool [len(nodes), len(tree)]: row i marks node i itself and its ancestors."""
        nodes = range(len(self)) if nodes is None else nodes
        mask = torch.zeros(len(nodes), len(self), dtype=torch.bool)
        for row, node in enumerate(nodes):
            mask[row, self.path(node)] = True
        return mask


def draw_children(q: torch.Tensor, k: int, replacement: bool, generator: torch.Generator) -> list[int]:
    """k children i.i.d. from q, or without replacement (as many as q supports). A single child is
    drawn the same way either way, so a chain consumes the random stream exactly like SpD."""
    k = supported_draws(q, k, replacement)
    return sample(q, generator, k, replacement=replacement or k == 1).tolist()


def draft_tree(ctx: Context, k_config: list[int], replacement: bool) -> Tree:
    """Grow the tree on the draft. On return the draft cache holds the context and every node
    except the last level (which is never fed to the draft)."""
    draft = ctx.pair.draft
    tree = Tree()
    tree.q[-1] = ctx.probs(draft.feed_uncached(ctx.tokens)[-1])
    frontier = [-1]
    for depth, k in enumerate(k_config):
        if depth > 0:
            level = range(frontier[0], frontier[-1] + 1)
            positions = torch.full((1, len(level)), len(ctx.tokens) + depth - 1)
            logits = draft.feed(torch.tensor([[tree.tokens[i] for i in level]]), positions=positions,
                                tree_mask=tree.ancestor_mask(level), keep=len(level))[0]
            for node, row in zip(level, logits):
                tree.q[node] = ctx.probs(row)
        next_frontier = []
        for parent in frontier:
            for token in draw_children(tree.q[parent], k, replacement, ctx.generator):
                next_frontier.append(len(tree))
                tree.tokens.append(token)
                tree.parents.append(parent)
                tree.depths.append(depth)
        frontier = next_frontier
    return tree


def verify_tree(ctx: Context, tree: Tree) -> tuple[torch.Tensor, torch.Tensor]:
    """One target call over the uncached committed tokens and every node.
    Returns processed p at the root [V] and at every node [len(tree), V]."""
    target = ctx.pair.target
    uncached = ctx.tokens[target.length:]
    u, n = len(uncached), len(tree)
    mask = torch.zeros(u + n, u + n, dtype=torch.bool)
    mask[:u, :u] = torch.ones(u, u, dtype=torch.bool).tril()
    mask[u:, :u] = True
    mask[u:, u:] = tree.ancestor_mask()
    positions = list(range(target.length, len(ctx.tokens))) + [len(ctx.tokens) + d for d in tree.depths]
    logits = target.feed(torch.tensor([uncached + tree.tokens]), positions=torch.tensor([positions]),
                         tree_mask=mask, keep=n + 1)[0]
    p = ctx.probs(logits)
    return p[0], p[1:]


def commit_path(ctx: Context, tree: Tree, path: list[int], last_level: int) -> None:
    """Keep the context and the accepted path in both caches (the draft never saw the last level)."""
    base = len(ctx.tokens)
    context = list(range(base))
    ctx.pair.target.keep_positions(context + [base + node for node in path])
    ctx.pair.draft.keep_positions(context + [base + node for node in path if tree.depths[node] < last_level])
