"""GPU check: forward speed of both backends at the paper's Llama-3 shapes, then correctness of
every decoder on CUDA, on both backends.

1. Roofline: the device's memory bandwidth (a large device-to-device copy, bytes read plus
   written), and for random-weight Llama-3.1-8B / Llama-3.2-1B shapes in bf16 (no hub is reachable
   from the GPU machine; shapes alone set the timings) after a 512-token prompt: ms per forward
   (target 1 and 5 tokens; draft 1 token at 1, 4 and 8 beams) on ``eager`` (transformers'
   DynamicCache) and ``static`` (mtad/runners/static.py: own KV buffers, torch.compile, one CUDA graph
   per shape; ``static:inductor`` lets mode="reduce-overhead" make the graphs instead), weight
   bytes, achieved bandwidth and its fraction of the measured roofline, compile seconds.
2. Greedy identity on CUDA (tiny random pair, float32): every decoder whose temperature-0 output
   must equal target greedy decoding does, against transformers' own generate(), on both backends.
3. Sampling smoke test of every decoder in bfloat16 on CUDA (eager), and NVML energy.

Results are written after each section, so a run cut short keeps what it measured.

    python scripts/gpu_check.py --out results/bench/gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from mtad.catalogue import DECODERS, build_decoder
from mtad.decoding.base import generate
from mtad.job.energy import build_meter
from mtad.runners.base import Runner
from mtad.runners.pair import Pair
from mtad.runners.quant import streamed_bytes
from mtad.job.records import environment, write_atomic
from mtad.decoding.sampling import SamplingConfig
from mtad.runners.catalogue import backend as backend_named
from mtad.runners.toy_models import LLAMA3_SHAPES, random_llama, tiny_llama_pair

# temperature-0 output equals target greedy (bild and mtjd differ by design; see their docs)
GREEDY_EXACT = ["ar", "spd", "specinfer", "mcss", "spectr", "typical", "mtad"]
LLAMA_SHAPES = {"target-8b": LLAMA3_SHAPES["llama-3.1-8b"], "draft-1b": LLAMA3_SHAPES["llama-3.2-1b"]}
SHAPES = {"target-8b": [(1, 1), (1, 5)], "draft-1b": [(1, 1), (4, 1), (8, 1)]}  # (rows, tokens)
CONTEXT = 512
# static:inductor leaves the CUDA graphs to torch.compile(mode="reduce-overhead"), for comparison
BACKENDS = "eager,static,static:inductor"


def copy_bandwidth_gbs(device: torch.device) -> float:
    """Device-to-device copy of 2 GiB, bytes read plus written, median of 10, GB/s."""
    src = torch.randn(2**30 // 2, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    times = []
    for _ in range(13):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * src.numel() * src.element_size() / statistics.median(times[3:]) / 1e9


def median_ms(runner: Runner, rows: int, n: int, repeats: int = 30) -> float:
    """Median ms of feeding ``n`` tokens to ``rows`` rows after ``CONTEXT`` cached tokens (cropped
    back after each call). The first calls warm up (and compile, on the static backend)."""
    runner.reset()
    runner.feed(torch.randint(0, 128256, (1, CONTEXT)))
    if rows > 1:
        runner.select_rows([0] * rows)
    tokens = torch.randint(0, 128256, (rows, n))
    times = []
    for _ in range(repeats + 3):
        before = runner.counter.seconds
        runner.feed(tokens)
        times.append(runner.counter.seconds - before)
        runner.crop(CONTEXT)
    return 1e3 * statistics.median(times[3:])


def forward_times(peak_gbs: float, results: dict, save, backends: list[str]) -> None:
    out = results.setdefault("forward_times", {})
    for name, shape in LLAMA_SHAPES.items():
        model = random_llama(shape, "cuda")
        weight = streamed_bytes(model)
        row = out[name] = {"weight_bytes": weight, "roofline_ms": weight / peak_gbs / 1e6}
        for backend in backends:
            kind, _, graphs = backend.partition(":")
            options = {} if kind == "eager" else dict(max_length=1024, cuda_graphs=graphs or "manual")
            runner = backend_named(kind).runner(model, **options)
            for rows, n in SHAPES[name]:
                ms = median_ms(runner, rows, n)
                row[f"{backend} rows={rows} tokens={n} ms"] = ms
                print(f"{name} {backend:<15} rows={rows} tokens={n}: {ms:7.2f} ms "
                      f"({weight / ms / 1e6:6.0f} GB/s, {100 * weight / ms / 1e6 / peak_gbs:3.0f}% of the roofline)",
                      flush=True)
            row[f"{backend} compile_seconds"] = runner.counter.compile_seconds
            print(f"{name} {backend} compile seconds: {runner.counter.compile_seconds:.1f}", flush=True)
            save()
            del runner
        del model
        torch.cuda.empty_cache()


def tiny_cuda_pair(dtype: torch.dtype, backend: str = "eager") -> Pair:
    target, draft = (m.to("cuda", dtype) for m in tiny_llama_pair(0))
    # the static backend with coarse buckets: few shapes, few compiles
    options = dict(max_length=256, token_buckets=(1, 8, 64)) if backend == "static" else {}
    runners = (backend_named(backend).runner(m, **options) for m in (target, draft))
    return Pair(*runners, name=f"tiny-cuda-{backend}")


def check_greedy_identity(backend: str) -> dict:
    pair = tiny_cuda_pair(torch.float32, backend)
    greedy = SamplingConfig(temperature=0)
    results = {}
    for prompt in ([1, 2, 3, 4, 5], [40, 41, 9, 60, 2, 33, 8, 8]):
        ids = torch.tensor([prompt], device="cuda")
        reference = pair.target.transformers_model().generate(ids, max_new_tokens=40, min_new_tokens=40, do_sample=False)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/bench/gpu_check.json")
    parser.add_argument("--skip-timings", action="store_true")
    parser.add_argument("--backends", default=BACKENDS, help="backends timed (default: %(default)s)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = {"environment": environment()}

    def save():
        results["seconds"] = time.perf_counter() - started
        write_atomic(out, json.dumps(results, indent=2))

    peak = copy_bandwidth_gbs(torch.device("cuda"))
    results["copy_bandwidth_gbs"] = peak
    print(f"device-to-device copy: {peak:.0f} GB/s (read + write)", flush=True)
    if not args.skip_timings:
        forward_times(peak, results, save, args.backends.split(","))
    for backend in ("eager", "static"):
        results[f"greedy_identity_{backend}"] = check_greedy_identity(backend)
        print(f"greedy identity on CUDA, {backend}:", results[f"greedy_identity_{backend}"], flush=True)
        save()
    results["sampling_smoke"] = check_sampling_smoke()
    print("sampling smoke (bf16):", results["sampling_smoke"], flush=True)
    meter = build_meter("nvml", [torch.device("cuda", 0)])
    results["energy"] = {"source": meter.source, "idle_watts": meter.idle_watts(1.0)}
    meter.close()
    print("energy:", results["energy"], flush=True)
    save()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
