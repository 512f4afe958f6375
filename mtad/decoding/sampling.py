"""The processed next-token distribution shared by every decoder (docs/decoders.md#processed-distribution).

Draft and target logits go through the same function, so "lossless" means: equal in
distribution to autoregressive sampling from ``process(target logits)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtad.ranges import Int, Real, check_ranges, ranged

# Bumped with any change to what ``process``, the samplers or the residual compute (every decoder's
# tokens go through them): part of every run id (mtad/job/harness.py, mtad/job/records.py).
SAMPLING_VERSION = 4  # 2: process masks the vocabulary instead of reading the top-k survivors (issue 35)
# 3: draws without replacement by successive inverse-CDF draws, not an exponential race (issue 35)
# 4: ``draw`` by inverse CDF too, not multinomial's exponential race (issue 38: 3.6 ms a draw on a CPU)


@dataclass(frozen=True)
class SamplingConfig:
    """Temperature, top-k and top-p, applied identically to draft and target.

    ``temperature == 0`` means greedy: the processed distribution is one-hot on the argmax.
    ``top_k == 0`` disables top-k; ``top_p == 1`` disables top-p.
    """

    temperature: float = ranged(1.0, Real(min=0, note="0: greedy"))
    top_k: int = ranged(10, Int(min=0, note="0: off"))
    top_p: float = ranged(0.9, Real(above=0, max=1, note="1: off"))

    def __post_init__(self):
        check_ranges(self, "sampling")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def process(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Processed probabilities over the last dimension, in float32.

    Top-k keeps every logit tied with the k-th largest; top-p (on the top-k-filtered logits)
    removes a sorted position i >= 1 iff the cumulative probability before it exceeds top_p,
    so the first token and the one that crosses top_p are always kept.

    It never reads a device value (a read stalls a GPU loop, issue 35): filters are masks over
    the whole vocabulary, not slices whose length depends on the logits.
    """
    logits = logits.float()
    if cfg.greedy:
        return one_hot(logits.argmax(-1), logits)
    z = logits / cfg.temperature if cfg.temperature != 1 else logits  # x / 1 == x: one op fewer per call
    top_k_active = 0 < cfg.top_k < z.shape[-1]
    if not top_k_active and cfg.top_p == 1:
        return z.softmax(-1)
    if top_k_active:
        top, index = torch.topk(z, cfg.top_k, dim=-1)  # descending
        kth = top[..., -1:]
        z = z.masked_fill(z < kth, float("-inf"))  # ties with the k-th value are kept
        if cfg.top_p < 1:
            z = z.masked_fill(_top_p_removed_after_top_k(z, top, index, kth, cfg.top_p), float("-inf"))
    else:
        z = z.masked_fill(_top_p_removed(z, cfg.top_p), float("-inf"))
    return z.softmax(-1)


def one_hot(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Float32 one-hot rows on ``index``, shaped like ``like``. Not ``torch.nn.functional.one_hot``:
    off CUDA it reads the device to check the index range."""
    return torch.zeros_like(like, dtype=torch.float32).scatter_(-1, index.unsqueeze(-1), 1.0)


def _top_p_removed(z: torch.Tensor, top_p: float) -> torch.Tensor:
    """Top-p's removal mask over the vocabulary: sort, then drop position i >= 1 when the mass
    before it exceeds top_p (ties in id order: the sort is stable)."""
    values, index = torch.sort(z, dim=-1, descending=True, stable=True)
    cum = values.softmax(-1).cumsum(-1)
    remove = torch.zeros_like(cum, dtype=torch.bool)
    remove[..., 1:] = cum[..., :-1] > top_p
    return torch.zeros_like(remove).scatter(-1, index, remove)


def _top_p_removed_after_top_k(z: torch.Tensor, top: torch.Tensor, index: torch.Tensor, kth: torch.Tensor,
                               top_p: float) -> torch.Tensor:
    """``_top_p_removed`` for logits ``z`` already masked at the k-th largest value, without sorting
    the vocabulary (a full sort costs ~3 ms a row on CPU at V = 151,936). ``top``, ``index``: the
    top-k values and ids, ``kth`` the k-th value. In the sorted order (ties in id order, as the stable sort) the mass before
    a token above the k-th value sums the top-k entries ahead of it; before the j-th (0-based) token
    tied with the k-th value, anywhere in the vocabulary, lie all tokens above it and j ties."""
    probs = z.softmax(-1)
    p_top = probs.gather(-1, index)
    ahead = (top[..., None, :] > top[..., :, None]) | (
        (top[..., None, :] == top[..., :, None]) & (index[..., None, :] < index[..., :, None]))  # [.., i, j]: j before i
    above = top > kth  # every token above the k-th value is in the top-k
    remove_above = above & ((ahead * p_top[..., None, :]).sum(-1) > top_p)
    tied = z == kth
    # counted in float32 (exact up to 2**24 > any vocabulary): a long [rows, V] tensor is twice the
    # bytes, and past 32 MB (29 rows of V = 151,936, a tree's verification) every allocation is a fresh
    # mmap the CPU page-faults through (scripts/profile_tree_round.py: 16 ms against 6 at 29 rows)
    tied_f = tied.float()
    ties_before = tied_f.cumsum(-1) - tied_f
    mass_above = (p_top * above).sum(-1, keepdim=True)
    remove = tied & (mass_above + ties_before * probs > top_p)
    return remove | torch.zeros_like(remove).scatter(-1, index, remove_above)


def draw(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token id per row of ``probs`` as a long tensor on their device (0-d for 1-D ``probs``),
    without reading the device: ``draws`` with n = 1, one uniform a row. Not multinomial's own
    one-sample method (argmax of p / E, E ~ Exp(1) per id, what this was up to SAMPLING_VERSION 3):
    its clock per vocabulary id cost 3.6 ms a row at V = 151,936 on a CPU, 8% of a llama.cpp target
    step, where the inverse CDF costs 0.5 ms (issue 38)."""
    return draws(probs, generator, 1)[..., 0]


def draws(probs: torch.Tensor, generator: torch.Generator, n: int) -> torch.Tensor:
    """``n`` i.i.d. token ids from each row of ``probs`` ([..., V], need not be normalised), long
    [..., n] on its device, without reading the device (``torch.multinomial`` reads it twice per
    call to check its input). Inverse transform sampling: the first id whose cumulative mass
    (float64) exceeds U * total, U ~ Uniform[0, 1), so an id without mass is never drawn. One
    uniform a draw and one cumulative sum a row: cheaper on a CPU than ``draw``'s clock per id
    (a [4, 2, 2] tree's children at V = 151,936: 1.2 ms against 84, scripts/profile_tree_round.py).
    A row without mass gives arbitrary ids."""
    cdf = probs.double().cumsum(-1)
    total = cdf[..., -1:]
    u = torch.rand((*probs.shape[:-1], n), generator=generator, device=probs.device, dtype=torch.float64)
    # U * total may round up to total; the largest double below it still lands on the last id with mass
    top = total.nextafter(total.new_zeros(()))
    ids = torch.searchsorted(cdf, torch.minimum(u * total, top), right=True)
    return ids.clamp_max(probs.shape[-1] - 1)  # a row without mass would point past the end


def draws_without_replacement(probs: torch.Tensor, generator: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` distinct ids from each row of ``probs`` ([..., V]) by successive sampling without
    replacement (each next id from the mass left, ``draws``), and which of them are real draws:
    when a row supports m < n ids, its last n - m are arbitrary ids without mass, marked False. A
    fixed shape whatever the support, so nothing is read from the device."""
    left = probs.double()
    ids, real = [], []
    for _ in range(n):
        ids.append(draws(left, generator, 1))
        real.append(left.gather(-1, ids[-1]) > 0)
        left = left.scatter(-1, ids[-1], 0.0)
    return torch.cat(ids, -1), torch.cat(real, -1)


def uniforms(generator: torch.Generator, n: int, device: torch.device | str) -> torch.Tensor:
    """``n`` U ~ Uniform[0, 1) draws at once, on the device; accept with probability r iff U < r."""
    return torch.rand((n,), generator=generator, device=device)


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)) per row; falls back to p where the residual has no mass (p == q up to
    rounding). Chosen by ``where``, not by reading the mass."""
    r = (p - q).clamp_min(0)
    total = r.sum(-1, keepdim=True)
    return torch.where(total > 0, r / total, p)
