"""Quality metrics computed the same way for every decoder."""

from __future__ import annotations

import math

import torch

from mtad.runners.base import Runner


def target_log_probs(target: Runner, prompt: list[int], tokens: list[int]) -> list[float]:
    """log p(token_t | prompt, tokens_<t) under the RAW target (T = 1, no top-k/top-p), one
    plain forward over the whole sequence. Resets the runner: call it outside timed regions."""
    if not tokens:
        return []
    target.reset()
    logits = target.feed_uncached(prompt + tokens, keep=len(tokens) + 1)[:-1].float()
    target.reset()
    log_p = logits.log_softmax(-1)
    return log_p[torch.arange(len(tokens), device=log_p.device), torch.tensor(tokens, device=log_p.device)].tolist()


def perplexity(mean_log_probs: list[float]) -> float:
    """exp(-mean over samples of each sample's mean token log-probability), as the MTAD code."""
    return math.exp(-sum(mean_log_probs) / len(mean_log_probs))
