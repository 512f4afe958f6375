"""Token-tree drafting and verification, shared by the tree decoders
(docs/decoders.md#token-trees-drafting-and-verification).

A tree is grown level by level from ``k_config`` = (k_1, ..., k_D): every node of level d-1 (the
root for d = 1) gets k_d children sampled from its draft distribution, in one batched draft call
per level with a tree attention mask. Nodes are stored level by level (BFS order); a node's
position id is ``len(context) + depth``. One target call scores the last committed token and every
node. Afterwards both caches keep only the context and the accepted path.

A round reads the device once, at its end (issue 35): the shape of a tree depends on ``k_config``
alone (MCSS pads a node whose draft supports fewer than k_d tokens with children it never accepts),
so its topology is built once on the host (``Topology``), the tokens stay on the device, and the
verification rule of each decoder fills a table of "next rows" (``next_rows``) that ``walk``
follows down the tree without a read.

Rows: row 0 is the root (the committed context), row 1 + i is node i. The first ``rows`` rows, the
root and every node with children, are the tree's internal rows, in the same order as the draft
distributions ``Tree.q``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from mtad.decoding.base import Block, Context
from mtad.decoding.chain import missing_context
from mtad.decoding.sampling import draw, draws, draws_without_replacement
from mtad.runners.base import KEPT_POSITIONS, TREE_MASKS

# What a decoder that drafts and verifies trees here asks of the runners (``Decoder.needs``):
# a level fed with a tree mask, the accepted path kept.
TREE_NEEDS = frozenset({TREE_MASKS, KEPT_POSITIONS})


@dataclass(frozen=True, eq=False)
class Topology:
    """Everything about a ``k_config`` tree but its tokens: host lists, and device tables for the
    rounds (built once per shape and device: ``topology``)."""

    k_config: tuple[int, ...]
    parents: list[int]         # -1 for children of the root
    depths: list[int]          # 0 for children of the root
    levels: list[range]        # the nodes of each level
    rows: int                  # internal rows: the root and every node with children
    row_paths: list[list[int]]  # per row, the nodes from the root's child down to the row's node
    # device tables
    child_rows: torch.Tensor   # long [rows, k_max]: rows of a row's children, in drawing order (padded)
    child_nodes: torch.Tensor  # long [rows, k_max]: the same as node ids
    real_child: torch.Tensor   # bool [rows, k_max]: False on the padding (a level with k_d < k_max)
    row_level: torch.Tensor    # long [rows]: the level of a row's children (0 for the root)
    internal: torch.Tensor     # long [rows]: 0..rows-1 (an internal row that rejects all its children stays)
    leaves: torch.Tensor       # long [1 + N - rows]: the last level's rows (always stay)
    root: torch.Tensor         # long [1]: row 0, where every walk starts
    ancestors: torch.Tensor    # long [1 + N, D]: a row's path as node ids, padded with 0
    draft_masks: list[torch.Tensor | None]  # per level d >= 1: level d-1's ancestor mask over the nodes so far
    node_mask: torch.Tensor    # bool [N, N]: each node sees itself and its ancestors

    def __len__(self) -> int:
        return len(self.parents)

    @property
    def depth(self) -> int:
        return len(self.k_config)

    def path(self, node: int) -> list[int]:
        """Node indices from the root's child down to ``node``."""
        return self.row_paths[1 + node]


@functools.lru_cache(maxsize=32)
def topology(k_config: tuple[int, ...], device: torch.device) -> Topology:
    """The tree of ``k_config`` on ``device``, built once (its host ops and copies are not a round's)."""
    levels, parents, depths = [], [], []
    for depth, k in enumerate(k_config):
        above = levels[-1] if levels else range(-1, 0)  # the root is "node -1"
        levels.append(range(len(parents), len(parents) + len(above) * k))
        for parent in above:
            parents.extend([parent] * k)
            depths.extend([depth] * k)
    n, rows, k_max = len(parents), 1 + len(parents) - len(levels[-1]), max(k_config)
    row_paths = [[]]
    for node in range(n):
        parent = parents[node]
        row_paths.append(row_paths[1 + parent] + [node] if parent >= 0 else [node])
    child_nodes = torch.zeros(rows, k_max, dtype=torch.long)
    real_child = torch.zeros(rows, k_max, dtype=torch.bool)
    row_level = torch.zeros(rows, dtype=torch.long)
    for row in range(rows):
        level = 0 if row == 0 else depths[row - 1] + 1
        start = levels[level].start + (0 if row == 0 else row - 1 - levels[level - 1].start) * k_config[level]
        child_nodes[row, : k_config[level]] = torch.arange(start, start + k_config[level])
        real_child[row, : k_config[level]] = True
        row_level[row] = level
    ancestors = torch.zeros(1 + n, len(k_config), dtype=torch.long)
    for row, path in enumerate(row_paths):
        ancestors[row, : len(path)] = torch.tensor(path, dtype=torch.long)
    node_mask = torch.zeros(n, n, dtype=torch.bool)
    for node in range(n):
        node_mask[node, row_paths[1 + node]] = True
    draft_masks = [None] + [node_mask[levels[d - 1].start:levels[d - 1].stop, : levels[d - 1].stop]
                             for d in range(1, len(k_config))]
    on = functools.partial(torch.Tensor.to, device=device)
    return Topology(
        tuple(k_config), parents, depths, levels, rows, row_paths,
        child_rows=on(child_nodes + 1), child_nodes=on(child_nodes), real_child=on(real_child),
        row_level=on(row_level), internal=on(torch.arange(rows)), leaves=on(torch.arange(rows, 1 + n)),
        root=on(torch.zeros(1, dtype=torch.long)), ancestors=on(ancestors),
        draft_masks=[None if m is None else on(m) for m in draft_masks], node_mask=on(node_mask))


@functools.lru_cache(maxsize=16)
def _verify_layout(t: Topology, uncached: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Position offsets (from the target's cache length) and the tree mask of a verification call
    that feeds ``uncached`` committed tokens, causal among themselves, then every node."""
    u, n = uncached, len(t)
    offsets = torch.cat([torch.arange(u), u + torch.tensor(t.depths, dtype=torch.long)])
    mask = torch.zeros(u + n, u + n, dtype=torch.bool)
    mask[:u, :u] = torch.ones(u, u, dtype=torch.bool).tril()
    mask[u:, :u] = True
    mask[u:, u:] = t.node_mask.cpu()
    return offsets.to(device), mask.to(device)


@functools.lru_cache(maxsize=256)
def _fed_layout(t: Topology, uncached: int, fed: tuple[int, ...], device: torch.device):
    """``_verify_layout`` for a call fed only the nodes ``fed`` (a pruned MCSS tree), and those
    nodes as a long tensor."""
    offsets, mask = _verify_layout(t, uncached, device)
    keep = torch.tensor(list(range(uncached)) + [uncached + node for node in fed], device=device)
    return offsets[keep], mask[keep][:, keep], torch.tensor(fed, device=device)


@functools.lru_cache(maxsize=256)
def _fed_rows(fed: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Long [1 + len(fed)]: the tree rows of a pruned verification's outputs (the root, 1 + node)."""
    return torch.tensor([0] + [1 + node for node in fed], device=device)


@dataclass(frozen=True)
class Support:
    """The vocabulary a sampled round plans on: the ids some draft distribution of the tree gives
    mass (ascending), plus one last column that stands for every other id.

    Every candidate comes from a draft distribution, and outside those ids q = 0, where MSS and
    K-SEQ leave the target's mass untouched (a residual max(P - q, 0) keeps P; min(rho q, P) is 0);
    so lumping the outside into one column with q = 0 changes nothing but the vocabulary's size:
    with top-k 10 a few dozen columns instead of 151,936 (issue 35: planning every node over the
    whole vocabulary cost a CPU round 15-20%). Only the new token needs the outside's ids back
    (``draw``)."""

    ids: torch.Tensor     # long [S]: the ids with draft mass, ascending
    inside: torch.Tensor  # bool [V]: the same as a mask
    column: torch.Tensor  # long [V]: each id's column, S (the lumped outside) for the others

    @staticmethod
    def of(mask: torch.Tensor, size: int) -> Support:
        """From ``mask`` (bool [V]) with ``size`` Trues (read by the caller): no read here."""
        ids = torch.nonzero_static(mask, size=size).squeeze(1)
        column = torch.full_like(mask, size, dtype=torch.long).index_copy_(0, ids, torch.arange(size, device=ids.device))
        return Support(ids, mask, column)

    def compact(self, probs: torch.Tensor) -> torch.Tensor:
        """[..., V] -> [..., S + 1]: the ids' values, then the outside's total (summed where it
        lies, not 1 minus the inside: an outside without mass stays exactly 0)."""
        outside = probs.masked_fill(self.inside, 0.0).sum(-1, keepdim=True)
        return torch.cat([probs.index_select(-1, self.ids), outside], -1)

    def expand(self, compact: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """[R, S + 1] -> [R, V]: the ids' values back in place, the outside column spread as
        ``probs`` [R, V] spreads its own outside mass (a residual never changes it there)."""
        outside = probs.masked_fill(self.inside, 0.0)
        mass = outside.sum(-1, keepdim=True)
        scale = torch.where(mass > 0, compact[:, -1:] / mass, 0.0)
        return (outside * scale).index_copy(-1, self.ids, compact[:, :-1])

    def draw(self, compact: torch.Tensor, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One id per row of ``compact`` [R, S + 1] (``expand``), drawn over the vocabulary with
        ``draw``: the random numbers a plan over the whole vocabulary takes."""
        return draw(self.expand(compact, probs), generator)


@dataclass
class Tree:
    topology: Topology
    tokens: torch.Tensor           # long [N], on the device, level by level
    q: torch.Tensor | None = None  # [rows, V]: the draft distribution at each internal row (None when greedy)
    fed: list[int] | None = None   # the nodes the target sees, in order (None: every node; ``draft_tree``)
    support: Support | None = None  # where a sampled round plans (None when greedy)

    def __len__(self) -> int:
        return len(self.topology)

    def path(self, node: int) -> list[int]:
        return self.topology.path(node)

    def on_all_rows(self, values: torch.Tensor, fill: float) -> torch.Tensor:
        """The verification's outputs [1 + len(fed), ...] on every row of the tree [1 + N, ...];
        the rows of nodes never fed (never reached by a walk) hold ``fill``."""
        if self.fed is None:
            return values
        rows = _fed_rows(tuple(self.fed), values.device)
        return values.new_full((1 + len(self), *values.shape[1:]), fill).index_copy_(0, rows, values)


def draw_children(q: torch.Tensor, k: int, replacement: bool,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """k children per row of ``q`` [F, V], long [F, k], and which are real draws (bool [F, k]),
    without reading the device.

    With replacement every child is real: ``draws`` (inverse CDF, one uniform a child), so a chain
    consumes the random stream exactly like SpD's ``draw``. Without replacement
    (``draws_without_replacement``) a row that supports fewer than k tokens ends with tokens of
    q = 0, marked not real; verification never accepts them."""
    if replacement or k == 1:  # one child a row is the same draw either way
        children = draws(q, generator, k)
        return children, torch.ones_like(children, dtype=torch.bool)
    return draws_without_replacement(q, generator, k)


def draft_tree(ctx: Context, k_config, replacement: bool) -> Tree:
    """Grow the tree on the draft. On return the draft cache holds the context and every node
    except the last level (which is never fed to the draft).

    The round's first device read (trees may read twice, issue 35) ends it. Sampling, it gives the
    ``Support`` the plan works on. Without replacement (MCSS) a node is alive when it and its
    ancestors are real draws; the others can never be accepted, so the target is fed only the
    alive ones (``Tree.fed``): on a CPU a verification costs about its number of tokens, and a
    confident draft leaves most of a [4, 2, 2] tree dead."""
    t = topology(tuple(k_config), ctx.pair.device)
    draft, base = ctx.pair.draft, len(ctx.tokens)
    logits = draft.feed(missing_context(ctx, draft)[None])[0, -1:]  # [1, V]: after the context
    levels, q, alive = [], [], []
    for depth, k in enumerate(t.k_config):
        if depth > 0:
            parents = levels[-1]
            positions = torch.full((1, len(parents)), base + depth - 1, device=draft.device)
            logits = draft.feed(parents[None], positions=positions, tree_mask=t.draft_masks[depth],
                                keep=len(parents))[0]
        if ctx.sampling.greedy:
            # q is one-hot: every child is the draft's argmax (a copy of a rejected child is
            # rejected as well, so copies change nothing at temperature 0); without replacement
            # only the first is a real draw
            children = logits.argmax(-1, keepdim=True).expand(-1, k)
            real = torch.arange(k, device=children.device).expand_as(children) == 0
        else:
            q.append(ctx.probs(logits))
            children, real = draw_children(q[-1], k, replacement, ctx.generator)
        levels.append(children.flatten())
        alive.append(real.flatten() & alive[-1].repeat_interleave(k) if alive else real.flatten())
    tree = Tree(t, torch.cat(levels), torch.cat(q) if q else None)
    # the round's first read: how many ids the drafts support and, without replacement, which nodes live
    mask = tree.q.gt(0).any(0) if q else None
    if replacement and mask is not None:
        tree.support = Support.of(mask, int(mask.sum()))
    elif not replacement:
        values = torch.cat([torch.cat(alive).long()] + ([mask.sum().view(1)] if q else [])).tolist()
        tree.fed = [node for node, live in enumerate(values[: len(t)]) if live]
        tree.support = Support.of(mask, values[-1]) if q else None
    return tree


def verify_tree(ctx: Context, tree: Tree) -> torch.Tensor:
    """One target call over the uncached committed tokens and every node the target sees (all, or
    ``tree.fed``): raw logits [1 + fed, V], row 0 after the context (the root), then one row per
    fed node, after it (``Tree.on_all_rows`` puts them on the tree's rows)."""
    target = ctx.pair.target
    context = missing_context(ctx, target)
    if tree.fed is None:
        offsets, mask = _verify_layout(tree.topology, len(context), target.device)
        nodes = tree.tokens
    else:
        offsets, mask, fed = _fed_layout(tree.topology, len(context), tuple(tree.fed), target.device)
        nodes = tree.tokens[fed]
    tokens = torch.cat([context, nodes])[None]
    return target.feed(tokens, positions=(offsets + target.length)[None], tree_mask=mask, keep=len(nodes) + 1)[0]


def next_rows(t: Topology, accepted: torch.Tensor, candidate_rows: torch.Tensor) -> torch.Tensor:
    """Long [1 + N]: where a walk goes from each row, the row of its first accepted candidate
    (``accepted`` bool [rows, k], candidates tried in column order, at ``candidate_rows``), or
    the row itself when every candidate is rejected and for the leaves (so a walk that stopped stays)."""
    first = accepted.byte().argmax(-1, keepdim=True)  # the first True (0 when there is none)
    chosen = candidate_rows.gather(-1, first).squeeze(-1)
    return torch.cat([torch.where(accepted.any(-1), chosen, t.internal), t.leaves])


def walk(t: Topology, next_row: torch.Tensor) -> torch.Tensor:
    """The row where the accepted path ends (long [1]), following ``next_row`` from the root D times."""
    row = t.root
    for _ in t.k_config:
        row = next_row.index_select(0, row)
    return row


def greedy_round(ctx: Context, tree: Tree, logits: torch.Tensor) -> Block:
    """At temperature 0 every distribution is one-hot: MSS and K-SEQ alike accept a child iff it is
    the target's argmax after its parent (every residual is the target's one-hot), and the new
    token is the argmax after the last accepted node: target greedy decoding."""
    t = tree.topology
    best = tree.on_all_rows(logits.argmax(-1), -1)  # [1 + N]: -1 (no token) on rows never fed
    accepted = (tree.tokens[t.child_nodes] == best[: t.rows, None]) & t.real_child
    row = walk(t, next_rows(t, accepted, t.child_rows))
    return finish_tree_round(ctx, tree, row, best.index_select(0, row))


def finish_tree_round(ctx: Context, tree: Tree, row: torch.Tensor, y: torch.Tensor) -> Block:
    """End a tree round with its one device read: the last accepted row, the new token y and the
    tokens of the row's path (padded to D) in one small tensor; then keep the path in both caches
    and emit its tokens and y."""
    t = tree.topology
    path_tokens = tree.tokens[t.ancestors.index_select(0, row)[0]]
    values = torch.cat([row, y.view(1), path_tokens]).tolist()
    path = t.row_paths[values[0]]
    commit_path(ctx, t, path, tree.fed)
    return Block(values[2:2 + len(path)] + [values[1]], accepted=len(path), drafted=t.depth)


def commit_path(ctx: Context, t: Topology, path: list[int], fed: list[int] | None) -> None:
    """Keep the context and the accepted path in both caches. The draft holds every node but the
    last level's at slot ``node``; the target holds the ``fed`` nodes in their order (all by default)."""
    base, target, draft = len(ctx.tokens), ctx.pair.target, ctx.pair.draft
    slot = {node: i for i, node in enumerate(fed)} if fed is not None else None
    kept = _to_device(list(range(base)) + [base + (node if slot is None else slot[node]) for node in path],
                      target.device)
    target.keep_positions(kept)
    drafted = sum(t.depths[node] < t.depth - 1 for node in path)  # a path runs root-down: a prefix
    draft.keep_positions(kept[: base + drafted] if slot is None else
                         _to_device(list(range(base)) + [base + node for node in path[:drafted]], draft.device))


def _to_device(values: list[int], device: torch.device) -> torch.Tensor:
    """Host ints as a long tensor on ``device``, copied through pinned memory without blocking, as
    ``chain.missing_context`` does (a runner copying a list itself would wait for queued work)."""
    tensor = torch.tensor(values, dtype=torch.long)
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)
