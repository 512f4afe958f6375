"""llama.cpp's own plain decoding of the target's GGUF file (llama-cpp-python's high-level
``Llama.generate``), as a reference row beside ``ar`` on ``pair.backend=llamacpp``: the same file,
threads, context, flash-attention setting and key/value type, its own decode loop and its own sampler (inside llama.cpp,
no logits copied out). What our loop costs on this backend is the gap between the two rows.

Like ``hf_assisted``, the whole generation runs in the first ``step`` and later steps hand it back
one token at a time, so the loop's stopping, truncation and statistics treat it like any
decoder's; every token is one target call. Sampling maps onto llama.cpp's sampler chain: greedy,
or temperature with top-k and top-p (``min_p`` off, as ours). Its random stream is llama.cpp's,
seeded from the generation's own generator: the same seed gives the same text, but not ``ar``'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from mtad.decoding.base import Block, Context, Decoder
from mtad.runners.base import GGUF_FILE

_models: dict[tuple, object] = {}  # (file, threads, cells, flash attention, kv type) -> llama_cpp.Llama


def llama_of(runner):
    """llama-cpp-python's ``Llama`` over ``runner``'s GGUF file with its settings, loaded once
    (the file is mapped, so its weights are not held twice)."""
    from mtad.runners.llamacpp import KV_TYPES, llama_cpp_module

    key = (str(runner.gguf_file()), runner.threads, runner.cells, runner.flash_attn, runner.kv_type)
    if key not in _models:
        lib = llama_cpp_module()
        _models[key] = lib.Llama(model_path=key[0], n_ctx=runner.cells, n_batch=runner.cells,
                                 n_threads=runner.threads, n_threads_batch=runner.threads,
                                 flash_attn=runner.flash_attn, type_k=KV_TYPES[runner.kv_type],
                                 type_v=KV_TYPES[runner.kv_type], n_gpu_layers=0, verbose=False)
    return _models[key]


@dataclass
class LlamaCppPlain(Decoder):
    name = "llamacpp_plain"
    version = 1
    needs = frozenset({GGUF_FILE})

    def step(self, ctx: Context) -> Block:
        if "tokens" not in ctx.state:
            ctx.state["tokens"] = self._generate(ctx)
        if not ctx.state["tokens"]:
            raise RuntimeError("llamacpp_plain: llama.cpp stopped before the loop's stopping conditions did")
        return Block([ctx.state["tokens"].pop(0)])

    def _generate(self, ctx: Context) -> list[int]:
        llama, counter = llama_of(ctx.pair.target), ctx.pair.target.counter
        sampling = ctx.sampling
        options = dict(top_k=1, temp=0.0) if sampling.greedy else dict(
            top_k=sampling.top_k, top_p=sampling.top_p, temp=sampling.temperature)
        llama.set_seed(int(torch.randint(2**31 - 1, (1,), generator=ctx.generator, device=ctx.generator.device)))
        llama.reset()  # else it reuses the cached prefix of the last generation: ar prefills every prompt
        out: list[int] = []
        start = time.perf_counter()
        for token in llama.generate(ctx.tokens, min_p=0.0, repeat_penalty=1.0, reset=True, **options):
            out.append(int(token))
            if (token in ctx.stop_ids or len(out) >= ctx.max_new_tokens
                    or (ctx.settled is not None and ctx.settled(out))):
                break
        counter.seconds += time.perf_counter() - start  # every forward, prompt included, is llama.cpp's
        counter.calls += len(out)
        counter.tokens += len(ctx.tokens) + len(out) - 1
        return out
