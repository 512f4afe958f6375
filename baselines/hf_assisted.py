"""transformers' own assisted generation, ``target.generate(assistant_model=draft)``, as a
reference row: the speculative sampling most people run, beside ours (``spd``) on the same
pair, prompts, sampling and gamma (docs/decoders.md#hf-assisted-transformers-assisted-generation).

With ``do_sample`` transformers verifies by the speculative-sampling rule (accept with
min(1, p/q), else sample the residual), so it is lossless like ``spd``. The draft length is
fixed at ``gamma`` (``num_assistant_tokens_schedule="constant"``, the confidence early stop off)
so the rounds compare one for one with ``spd``; transformers' defaults (a heuristic length
from 20, early stop at confidence 0.4) are another method.

The whole generation runs in the first ``step``, on the models' own transformers forward and
``DynamicCache``, whichever backend's runners hold them (``Runner.transformers_model``; that is
transformers' implementation). A
stopping criterion records each round; later steps hand the rounds back one block at a time,
so the loop's stopping, truncation and statistics treat them like any decoder's. Forward hooks
book both models' calls, tokens and seconds in the runners' counters.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from mtad.decoding.base import Block, Context, Decoder
from mtad.ranges import Int, ranged
from mtad.runners.base import TRANSFORMERS_MODEL


@dataclass
class HFAssisted(Decoder):
    name = "hf_assisted"
    version = 1
    needs = frozenset({TRANSFORMERS_MODEL})  # it runs transformers' generate on both models
    gamma: int = ranged(4, Int(min=1))

    def step(self, ctx: Context) -> Block:
        if "rounds" not in ctx.state:
            ctx.state["rounds"] = self._generate(ctx)
        if not ctx.state["rounds"]:
            raise RuntimeError("hf_assisted: transformers stopped before the loop's stopping conditions did")
        return ctx.state["rounds"].pop(0)

    def _generate(self, ctx: Context) -> list[Block]:
        target, draft = ctx.pair.target.transformers_model(), ctx.pair.draft.transformers_model()
        prompt = torch.tensor([ctx.tokens], device=target.device)
        rounds = RoundRecorder(prompt.shape[1], ctx.settled)
        sampling = ctx.sampling
        # every sampling option explicit: a model's generation_config.json must not add its own
        options = dict(do_sample=False) if sampling.greedy else dict(
            do_sample=True, temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p)
        options["repetition_penalty"] = 1.0
        # transformers draws from torch's global generator: seed it from this generation's own
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=ctx.generator, device=ctx.generator.device)))
        stop = sorted(ctx.stop_ids)
        with fixed_draft_length(draft, self.gamma), counted(target, ctx.pair.target.counter, rounds.target_calls), \
                counted(draft, ctx.pair.draft.counter, rounds.draft_calls), torch.inference_mode():
            target.generate(prompt, attention_mask=torch.ones_like(prompt), assistant_model=draft,
                            max_new_tokens=ctx.max_new_tokens, min_new_tokens=0, eos_token_id=stop or None,
                            pad_token_id=stop[0] if stop else 0, stopping_criteria=[rounds], **options)
        return rounds.blocks


class RoundRecorder:
    """A transformers stopping criterion, called once per verification round with the whole
    sequence: cuts the output into rounds and stops when the task's answer is settled."""

    def __init__(self, prompt_length: int, settled):
        self.length, self.settled = prompt_length, settled
        self.blocks: list[Block] = []
        self.target_calls, self.draft_calls = [0], [0]  # running counts, bumped by the hooks
        self._drafted_before = 0

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        tokens = input_ids[0, self.length:].tolist()
        drafted = self.draft_calls[0] - self._drafted_before  # one draft call per proposed token
        self.blocks.append(Block(tokens, accepted=max(len(tokens) - 1, 0), drafted=drafted))
        self.length, self._drafted_before = input_ids.shape[1], self.draft_calls[0]
        new = [t for block in self.blocks for t in block.tokens]
        done = self.settled is not None and self.settled(new)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


@contextmanager
def fixed_draft_length(draft, gamma: int):
    """The draft proposes exactly ``gamma`` tokens a round (where the budget allows)."""
    config = draft.generation_config
    saved = {key: getattr(config, key, None) for key in
             ("num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold")}
    config.num_assistant_tokens, config.num_assistant_tokens_schedule = gamma, "constant"
    config.assistant_confidence_threshold = 0.0
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(config, key, value)


@contextmanager
def counted(model, counter, calls: list[int]):
    """Book every forward of ``model`` (calls, tokens fed, seconds) in ``counter``; ``calls[0]``
    counts them too, for the round recorder."""
    began = []

    def before(module, args, kwargs):
        began.append(time.perf_counter())

    def after(module, args, kwargs, output):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        counter.seconds += time.perf_counter() - began.pop()
        counter.calls += 1
        counter.tokens += ids.numel() if ids is not None else 0
        calls[0] += 1

    handles = [model.register_forward_pre_hook(before, with_kwargs=True),
               model.register_forward_hook(after, with_kwargs=True)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
