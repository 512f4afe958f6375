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


def hit_max_new_tokens(records: list[dict], max_new_tokens: int) -> dict[str, int]:
    """How many of a run's examples, and of their generations (one per turn; one per example on a
    single-turn task), stopped at ``max_new_tokens``: their answers are cut short. An example's last
    generation hit it when its ``stop_reason`` says so (a stop token or a settled answer falling
    exactly on the cap is no hit), and so did each turn of a record with ``turn_stop_reasons``;
    an earlier turn of a record without them (before issue 36) when it emitted ``max_new_tokens``
    tokens (``turn_tokens``)."""
    examples = generations = total = 0
    for record in records:
        turns = record.get("turn_tokens") or [len(record["new_tokens"])]
        if "turn_stop_reasons" in record:
            hits = sum(reason == "max_new_tokens" for reason in record["turn_stop_reasons"])
        else:
            hits = sum(n >= max_new_tokens for n in turns[:-1]) + (record["stop_reason"] == "max_new_tokens")
        examples += hits > 0
        generations += hits
        total += len(turns)
    return {"examples": examples, "of_examples": len(records), "generations": generations, "of_generations": total}
