"""GPU check: the pair, every decoder and the energy meter on CUDA, then forward times of the
paper's Llama-3 8B/1B shapes.

1. Greedy identity on CUDA (tiny random pair, float32): every decoder whose temperature-0 output
   must equal target greedy decoding does, against transformers' own generate().
2. Sampling smoke test of every decoder in bfloat16 on CUDA.
3. NVML energy: idle power, and joules of a timed region.
4. Forward times with random weights in the shapes of Llama-3.1-8B and Llama-3.2-1B (no hub is
   reachable from the GPU machine; shapes alone set the timings): target 1 vs 5 tokens, draft
   1 vs 4 beams, after a 512-token prompt.

    python scripts/gpu_check.py --out results/bench/gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mtad.catalogue import DECODERS, build_decoder
from mtad.decoding import generate
from mtad.energy import build_meter
from mtad.pair import Pair, HFRunner
from mtad.records import environment, write_atomic
from mtad.sampling import SamplingConfig
from mtad.toy_models import tiny_llama_pair

# temperature-0 output equals target greedy (bild and mtjd differ by design; see their docs)
GREEDY_EXACT = ["ar", "spd", "specinfer", "mcss", "spectr", "typical", "mtad"]
LLAMA_SHAPES = {  # Llama-3.1-8B and Llama-3.2-1B
    "target-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, tie_word_embeddings=False),
    "draft-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, tie_word_embeddings=True),
}


def tiny_cuda_pair(dtype: torch.dtype) -> Pair:
    target, draft = (m.to("cuda", dtype) for m in tiny_llama_pair(0))
    return Pair(HFRunner(target), HFRunner(draft), name="tiny-cuda")


def check_greedy_identity() -> dict:
    pair = tiny_cuda_pair(torch.float32)
    greedy = SamplingConfig(temperature=0)
    results = {}
    for prompt in ([1, 2, 3, 4, 5], [40, 41, 9, 60, 2, 33, 8, 8]):
        ids = torch.tensor([prompt], device="cuda")
        reference = pair.target.model.generate(ids, max_new_tokens=40, min_new_tokens=40, do_sample=False)
        reference = reference[0, len(prompt):].tolist()
        for name in GREEDY_EXACT:
            out = generate(pair, build_decoder(name), prompt, max_new_tokens=40, sampling=greedy, stop_ids=())
            results.setdefault(name, []).append(out.tokens == reference)
    return {name: all(ok) for name, ok in results.items()}


def check_sampling_smoke() -> dict:
    pair = tiny_cuda_pair(torch.bfloat16)
    results = {}
    for name in sorted(DECODERS):
        out = generate(pair, build_decoder(name), [7, 8, 9], max_new_tokens=32, seed=1, stop_ids=())
        results[name] = {"tokens": len(out.tokens), "in_vocab": all(0 <= t < pair.target.vocab_size for t in out.tokens),
                         "block_efficiency": out.stats.block_efficiency}
    return results


def random_llama(shape: dict):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=128256, num_attention_heads=32, num_key_value_heads=8, rope_theta=500000.0,
                         max_position_embeddings=8192, attn_implementation="sdpa", **shape)
    with torch.device("cuda"):
        torch.set_default_dtype(torch.bfloat16)
        try:
            return LlamaForCausalLM(config).eval()
        finally:
            torch.set_default_dtype(torch.float32)


def median_ms(runner: HFRunner, prefix: torch.Tensor, tokens: torch.Tensor, repeats: int = 20) -> float:
    """Median time of feeding ``tokens`` [B, n] after ``prefix`` (cropped back after each call)."""
    runner.reset()
    runner.feed(prefix)
    if tokens.shape[0] > 1:
        runner.select_rows([0] * tokens.shape[0])
    times = []
    for _ in range(repeats + 3):
        start = runner.counter.seconds
        runner.feed(tokens)
        times.append(runner.counter.seconds - start)
        runner.crop(prefix.shape[1])
    return 1e3 * sorted(times[3:])[repeats // 2]


def forward_times(meter) -> dict:
    prefix = torch.randint(0, 128256, (1, 512), device="cuda")
    times = {}
    for name, shape in LLAMA_SHAPES.items():
        runner = HFRunner(random_llama(shape))
        before = meter.joules()
        for batch, n in ((1, 1), (1, 5), (4, 1), (8, 1)):
            times[f"{name} batch={batch} tokens={n} ms"] = median_ms(runner, prefix, torch.randint(0, 128256, (batch, n), device="cuda"))
        after = meter.joules()
        times[f"{name} joules (all timings)"] = None if after is None else after - before
        del runner
        torch.cuda.empty_cache()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/bench/gpu_check.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device")
    results = {"environment": environment()}
    started = time.perf_counter()
    results["greedy_identity"] = check_greedy_identity()
    print("greedy identity on CUDA:", results["greedy_identity"], flush=True)
    results["sampling_smoke"] = check_sampling_smoke()
    print("sampling smoke (bf16):", results["sampling_smoke"], flush=True)
    meter = build_meter("nvml", [torch.device("cuda", 0)])
    results["energy"] = {"source": meter.source, "idle_watts": meter.idle_watts(2.0)}
    print("energy:", results["energy"], flush=True)
    results["forward_times"] = forward_times(meter)
    meter.close()
    for key, value in results["forward_times"].items():
        print(f"{key}: {value:.2f}" if value is not None else f"{key}: none", flush=True)
    results["seconds"] = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
