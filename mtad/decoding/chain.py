"""Chain drafting and single-sequence verification, shared by the chain decoders (spd, mtad, ...).

Draft tokens stay on the models' device from the draft's sampler to the target's input, so a
round can read the device once, at its end (``finish_round``; docs/decoders.md#chain-rounds-commit-and-crop).
"""

from __future__ import annotations

import torch

from mtad.decoding.base import Block, Context
from mtad.decoding.sampling import draw
from mtad.runners.base import Runner


def missing_context(ctx: Context, runner: Runner) -> torch.Tensor:
    """The committed tokens ``runner``'s cache lacks, on its device. The host knows them; on a GPU
    the copy goes through pinned memory without blocking, so it need not wait for queued work."""
    tokens = torch.tensor(ctx.tokens[runner.length:], dtype=torch.long)
    if runner.device.type == "cuda":
        tokens = tokens.pin_memory()
    return tokens.to(runner.device, non_blocking=True)


def draft_chain(ctx: Context, gamma: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``gamma`` tokens autoregressively from the draft; returns them (long [gamma], on the
    device, never read) and their full processed distributions q [gamma, V] (the residual needs
    the whole vectors)."""
    draft = ctx.pair.draft
    logits = draft.feed(missing_context(ctx, draft)[None])[0, -1]
    tokens, qs = [], []
    for i in range(gamma):
        q = ctx.probs(logits)
        tokens.append(draw(q, ctx.generator))
        qs.append(q)
        if i + 1 < gamma:  # the last draft token is never fed to the draft
            logits = draft.feed(tokens[-1].view(1, 1))[0, -1]
    return torch.stack(tokens), torch.stack(qs)


def verify_chain(ctx: Context, tokens: list[int] | torch.Tensor) -> torch.Tensor:
    """One target call over the uncached context plus ``tokens``: raw logits [len+1, V] at the
    positions that predict each token and the one after them."""
    target = ctx.pair.target
    drafted = torch.as_tensor(tokens, dtype=torch.long, device=target.device)
    return target.feed(torch.cat([missing_context(ctx, target), drafted])[None], keep=len(drafted) + 1)[0]


def commit_prefix(ctx: Context, accepted: int) -> None:
    """Crop both caches to the context plus the accepted draft tokens
    (docs/decoders.md#chain-rounds-commit-and-crop)."""
    keep = len(ctx.tokens) + accepted
    ctx.pair.target.crop(keep)
    ctx.pair.draft.crop(min(ctx.pair.draft.length, keep))


def finish_round(ctx: Context, accepted: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> Block:
    """End a chain round with its one device read: the accepted count L, the draft tokens and the
    bonus y in one small tensor; then crop to the context plus x_1..x_L and emit x_1..x_L, y."""
    values = torch.cat([accepted.view(1), x, y.view(1)]).tolist()
    n = values[0]
    commit_prefix(ctx, n)
    return Block(values[1:1 + n] + values[-1:], accepted=n, drafted=len(x))
