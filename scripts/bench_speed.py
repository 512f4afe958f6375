"""Speed benchmark on a real pair: AR vs SpD vs MTAD vs transformers' assisted generation.

First the roofline: the machine's memory bandwidth (the better of a large bf16 GEMV and a float32
sum, best of several), then for each model (target, draft, int8 draft) the ms per forward shape
(1 and gamma+1 tokens; 1, 4 and 8 beams) after a cached context, its weight bytes, the bandwidth
it achieves and the fraction of the roofline (gpt-fast's "bandwidth achieved").

Then the decoders, through the harness's one job driver (``mtad.job.harness.run_jobs``, as
``python -m mtad.job.interleave``): ordinary runs with records, taking turns example by example on
one loaded pair, one sitting per mode (greedy, sampling), after its warm-up: tokens/s, ratios, and
for each decoder its forward-time limit tokens / (target seconds + draft seconds), the tokens/s it
would reach if nothing but its own forwards (prompt passes included) took time, and the share of
that limit it reaches ((target + draft seconds) / wall seconds); the per-call means printed beside
it include the prompt passes, so for short answers they are not one step's cost (the roofline
above gives those). Decoders are
``name:key=value`` specs as in the interleave entry (``hf_assisted`` is transformers' assisted
generation); the other arguments are Hydra overrides of the pair, task and budget shared by all of
them: ``pair.draft_quant=int8`` (int8 draft weights, ``mtad/runners/quant.py``),
``pair.backend=static`` (``mtad/runners/static.py``; compile time is left out of tokens/s and
printed apart), ``pair.draft_head_rows=32768`` (the draft's output head cut to the first ids,
``TransformersRunner.head_rows``), ``pair.backend=llamacpp`` (the GGUF files in llama.cpp,
``mtad/runners/llamacpp.py``; add ``llamacpp_plain`` to the decoders for llama.cpp's own
generation of the same file in the same sitting, and leave out ``hf_assisted``). Records go to ``results_dir`` (outputs/bench unless given), measured
afresh each time (``resume=false`` unless given).

    python scripts/bench_speed.py task.limit=10 max_new_tokens=96
    python scripts/bench_speed.py --decoders ar,spd,mtad pair.backend=static pair.draft_quant=int8
    python scripts/bench_speed.py --decoders ar,llamacpp_plain,spd,mtad pair.backend=llamacpp
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path

import torch

from mtad.decoding.base import GenerationStats
from mtad.errors import UserError, one_line_errors
from mtad.job.comparison import speedup
from mtad.job.harness import Job, cached_pair, run_jobs
from mtad.job.interleave import job_configs
from mtad.job.records import environment, read_lines, write_atomic
from mtad.runners.base import TRANSFORMERS_MODEL, Runner
from mtad.runners.llamacpp import gguf_weight_bytes
from mtad.runners.quant import streamed_bytes
from mtad.runners.static import StaticRunner

# Hydra overrides every sitting gets unless the command line sets the same key: the embedded pair
# on HumanEval's first prompts, and fresh measurements kept out of the committed results store
DEFAULTS = ["pair=qwen2.5-coder", "task=humaneval", "task.limit=10", "max_new_tokens=96", "resume=false",
            "results_dir=outputs/bench"]
MODES = {"greedy": ["sampling.temperature=0"], "sampling": []}  # sampling: conf/config.yaml's settings


def bandwidth_gbs(repeats: int = 7) -> float:
    """The machine's memory read bandwidth, GB/s: the better of two probes, each best of
    ``repeats``: a bf16 GEMV over a 512 MiB matrix (the torch backends' one-token step) and a
    float32 sum over 1 GiB (a plain streaming read). On the 2-core EPYC the GEMV reads 20-21 GB/s
    and the sum 32 GB/s, which llama.cpp's Q4_K one-token step reaches (33 GB/s): with the GEMV
    alone the roofline read 157% for it."""
    matrix = torch.randn(32768, 8192, dtype=torch.bfloat16)
    vector = torch.randn(1, 8192, dtype=torch.bfloat16)
    stream = torch.ones(1 << 28)
    best = {"gemv": float("inf"), "sum": float("inf")}
    for _ in range(repeats):
        for probe, run in (("gemv", lambda: torch.nn.functional.linear(vector, matrix)), ("sum", stream.sum)):
            start = time.perf_counter()
            run()
            best[probe] = min(best[probe], time.perf_counter() - start)
    return max(matrix.numel() * matrix.element_size() / best["gemv"],
               stream.numel() * stream.element_size() / best["sum"]) / 1e9


def synchronize(runner: Runner) -> None:
    if runner.device.type == "cuda":
        torch.cuda.synchronize(runner.device)


def forward_ms(runner: Runner, context: int, rows: int, n: int, repeats: int = 5) -> float:
    """Median ms of feeding ``n`` tokens to ``rows`` batch rows after ``context`` cached tokens."""
    times = []
    for _ in range(repeats):
        runner.reset()
        runner.feed(torch.arange(1, context + 1)[None])
        if rows > 1:
            runner.select_rows([0] * rows)
        synchronize(runner)  # the context's forward done before the clock starts
        start = time.perf_counter()
        runner.feed(torch.arange(1, n + 1).expand(rows, n))
        synchronize(runner)  # feed returns before a CUDA forward is done (it times itself with events)
        times.append(time.perf_counter() - start)
    runner.reset()
    return 1e3 * statistics.median(times)


def roofline(models: dict[str, Runner], gamma: int, context: int = 256) -> dict:
    peak = bandwidth_gbs()
    print(f"memory bandwidth (the better of a bf16 GEMV and a float32 sum, best of 7): {peak:.1f} GB/s", flush=True)
    out = {"bandwidth_gbs": peak, "context": context, "models": {}}
    for name, runner in models.items():
        weight = (streamed_bytes(runner.transformers_model()) if TRANSFORMERS_MODEL in runner.capabilities
                  else gguf_weight_bytes(runner.gguf_file()))
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


def with_defaults(overrides: list[str]) -> list[str]:
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    return [d for d in DEFAULTS if d.split("=", 1)[0] not in given] + overrides


def sitting(specs: list[str], overrides: list[str], mode: str, yardstick=None) -> list[dict]:
    """One sitting of the decoders in ``mode``; the summaries, in the order of ``specs``.
    ``yardstick.between(jobs)``, if given, is the ``between`` step of ``run_jobs``: an outside
    program taking its turn on each example after the decoders."""
    configs = job_configs(specs, overrides + MODES[mode])
    out = Path(configs[0].results_dir) / "jobs" / f"bench-{mode}"
    jobs = [Job(config, out / str(k), sweep=str(out)) for k, config in enumerate(configs)]
    return run_jobs(jobs, between=yardstick.between(jobs) if yardstick else None)


def report(mode: str, specs: list[str], summaries: list[dict]) -> dict:
    """Print a mode's rows (tokens/s, ratios, forward-time limits) and return them by spec."""
    tokens = {s["run_id"]: {r["id"]: r["new_tokens"] for r in read_lines(Path(s["output_dir"]) / "samples.jsonl")}
              for s in summaries}
    ar = next((s for s in summaries if s["decoder"] == "ar"), None)
    rows = {}
    for spec, s in zip(specs, summaries):
        st = s["totals"]
        row = rows[spec] = {"run_id": s["run_id"], "tokens": st["new_tokens"], "seconds": st["wall_seconds"],
                            "tokens_per_second": s["tokens_per_second"], "stats": st}
        line = (f"[{mode}] {spec:<14} tokens={st['new_tokens']:<5} seconds={st['wall_seconds']:7.2f} "
                f"tok/s={s['tokens_per_second']:6.2f} block_eff={s['block_efficiency']:.2f}")
        if st["compile_seconds"]:  # shapes the warm-up did not meet, compiled while timing
            line += f" compile_s={st['compile_seconds']:.1f} (not in tok/s)"
        if s["sampling"]["temperature"] == 0 and ar is not None:
            # bf16 batched verification can flip a near-tie, so a rare mismatch is not a bug
            reference = tokens[ar["run_id"]]
            row["same_as_ar"] = sum(reference.get(i) == t for i, t in tokens[s["run_id"]].items())
            line += f" same_as_ar={row['same_as_ar']}/{len(reference)}"
        print(line, flush=True)
        for reference in ("ar", "hf_assisted", "llamacpp_plain"):  # one sitting: their tokens/s may be divided
            ratio = speedup(s, summaries, reference)
            if ratio is not None:
                row[f"speedup_vs_{reference}"] = ratio
        stats = GenerationStats.from_dict(st)
        forward = stats.forward_seconds
        if forward:  # a yardstick (llamacpp_plain, hf_assisted) books its whole generate() as target time
            row["limit"] = {"forward_seconds": forward, "tokens_per_second_limit": st["new_tokens"] / forward,
                            "share_of_limit": stats.forward_share,
                            "target_ms_per_call": 1e3 * st["target_seconds"] / st["target_calls"],
                            "draft_ms_per_call": 1e3 * st["draft_seconds"] / st["draft_calls"] if st["draft_calls"] else None,
                            "block_efficiency": st["block_efficiency"]}
            draft_ms = row["limit"]["draft_ms_per_call"]
            print(f"[{mode}]   {spec:<14} forwards {forward:6.2f} s of {st['wall_seconds']:6.2f} s wall: "
                  f"{100 * row['limit']['share_of_limit']:.0f}% of its forward-only limit "
                  f"({row['limit']['tokens_per_second_limit']:.2f} tok/s); per call (prompt passes included): target "
                  f"{row['limit']['target_ms_per_call']:5.1f} ms, draft {'-' if draft_ms is None else f'{draft_ms:5.1f}'} ms, "
                  f"BE {st['block_efficiency']:.2f}", flush=True)
    print(f"[{mode}] " + "  ".join(f"{spec} {r.get('speedup_vs_ar', 0):.2f}x AR" +
                                   (f" / {r['speedup_vs_hf_assisted']:.2f}x HF" if "speedup_vs_hf_assisted" in r else "")
                                   + (f" / {r['speedup_vs_llamacpp_plain']:.2f}x llama.cpp"
                                      if "speedup_vs_llamacpp_plain" in r else "")
                                   for spec, r in rows.items()), flush=True)
    return rows


def speculative_counts(log: str, length: int) -> dict:
    """What one ``llama-speculative`` run did, read from its log, credited with ``length`` tokens.

    It stops only after a round takes its count past ``-n`` and counts every token of that round,
    up to gamma + 1 more than asked for; our decoders run the same last round but keep only the
    tokens their job needs. Counting its extras would credit it with up to gamma + 1 tokens a
    prompt for free (8% of 40-token answers), so it runs with ``-n length - 1`` (its last round
    reaches ``length``) and is credited ``length``; ``generated`` keeps its own count. Raises
    ValueError when the log lacks its summary lines or falls short of ``length``."""
    import re

    found = {key: re.search(pattern, log) for key, pattern in {
        "encoded": r"encoded\s+(\d+) tokens in\s+([\d.]+) seconds", "decoded": r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds",
        "drafted": r"n_drafted\s*=\s*(\d+)", "accept": r"n_accept\s*=\s*(\d+)"}.items()}
    missing = [key for key, match in found.items() if match is None]
    if missing:
        raise ValueError(f"llama-speculative's log lacks {', '.join(missing)}")
    generated = int(found["decoded"][1])
    if generated < length:
        raise ValueError(f"llama-speculative generated {generated} tokens of the {length} asked for")
    return {"tokens": length, "generated": generated,
            "seconds": float(found["encoded"][2]) + float(found["decoded"][2]),
            "drafted": int(found["drafted"][1]), "accepted": int(found["accept"][1])}


class LlamaSpeculative:
    """llama.cpp's own speculative decoding of the pair's GGUF files (its ``llama-speculative``,
    built from the same source by scripts/build_llamacpp_tools.sh): one process per prompt, same
    threads, draft length and sampling as our first ``spd`` job, run as ``run_jobs``' ``between``
    step, so it takes its turn on each prompt right after our decoders (the machine's speed drifts
    by 10% and more over a sitting). It knows none of our tasks' stop rules, so each prompt runs
    until it has as many tokens as our ``spd`` job just did on it (``--ignore-eos``) and is
    credited with that many (``speculative_counts``): the same share of prompt pass in both
    tokens/s, which count it. The prompt goes in as text (the same vocabulary). Its drafts are
    the draft's top token even when sampling (its example's rule, not ours), so its acceptance
    differs from SpD's."""

    def __init__(self, tools: Path, pair):
        self.tools, self.pair = tools, pair

    def between(self, jobs: list[Job]):
        """The step for ``run_jobs(jobs, between=...)``, counting afresh (one sitting, one mode);
        ``jobs`` hold an spd job (``main`` refuses a sitting without one)."""
        self.spd = next(job for job in jobs if job.decoder.name == "spd")
        self.gamma = self.spd.decoder.gamma
        sampling = self.spd.config.sampling
        self.options = ["--temp", "0"] if sampling.temperature == 0 else [
            "--temp", str(sampling.temperature), "--top-k", str(sampling.top_k), "--top-p", str(sampling.top_p),
            "--min-p", "0"]
        self.totals = Counter()  # speculative_counts' keys, summed over the prompts
        return self.turn

    def turn(self, i: int) -> None:
        import subprocess
        import tempfile

        example, config, tools = self.spd.examples[i], self.spd.config, self.tools
        length = len(self.spd.recorder.done[example.id]["new_tokens"])
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as prompt:
            prompt.write(self.pair.tokenizer.decode(example.prompt_ids))
            prompt.flush()
            proc = subprocess.run([str(tools / "llama-speculative"), "-m", str(self.pair.target.gguf_file()),
                                   "-md", str(self.pair.draft.gguf_file()), "-f", prompt.name,
                                   "-n", str(max(length - 1, 0)), "--ignore-eos",  # it stops past -n
                                   "--spec-draft-n-max", str(self.gamma), "-t", str(self.pair.target.threads),
                                   "-c", str(self.pair.target.cells), "--seed", str(config.seed), *self.options],
                                  capture_output=True, text=True, check=False, env={**os.environ, "LD_LIBRARY_PATH": str(tools)},
                                  timeout=600)
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RuntimeError(f"llama-speculative failed on {example.id} (exit {proc.returncode}): {log[-500:]}")
        try:
            self.totals.update(speculative_counts(log, length))
        except ValueError as error:
            raise RuntimeError(f"llama-speculative on {example.id}: {error}: {log[-500:]}") from error

    def row(self, mode: str) -> dict:
        t = self.totals
        row = {"tokens": t["tokens"], "generated": t["generated"], "seconds": t["seconds"],
               "tokens_per_second": t["tokens"] / t["seconds"],
               "acceptance_rate": t["accepted"] / t["drafted"] if t["drafted"] else None,
               "interleaved": True}  # took turns with the sitting's decoders, prompt by prompt
        print(f"[{mode}] llama-speculative tokens={t['tokens']} seconds={t['seconds']:.2f} "
              f"tok/s={row['tokens_per_second']:.2f} accept={row['acceptance_rate']}", flush=True)
        return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoders", default="ar,spd,mtad,hf_assisted", help="comma-separated name[:key=value...]")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: greedy, sampling")
    parser.add_argument("--skip-roofline", action="store_true", help="decoders only")
    parser.add_argument("--out", default="results/bench/speed.json")
    parser.add_argument("--llamacpp-tools", type=Path, default=None,
                        help="with pair.backend=llamacpp: the folder of llama-speculative "
                             "(scripts/build_llamacpp_tools.sh prints it); its speculative decoding takes a turn on each prompt "
                             "after the decoders, as long as our spd runs")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides shared by every decoder (pair, task, budget)")
    args = parser.parse_args()
    specs, overrides = args.decoders.split(","), with_defaults(args.overrides)
    with one_line_errors():
        modes = args.modes.split(",")
        unknown = [m for m in modes if m not in MODES]
        if unknown:
            parser.error(f"--modes: unknown {', '.join(unknown)} (known: {', '.join(MODES)})")
        configs = job_configs(specs, overrides)
        if args.llamacpp_tools is not None and not any(c.decoder["name"] == "spd" for c in configs):
            raise UserError("--llamacpp-tools: llama-speculative takes its token counts from an spd decoder; "
                            "add spd to --decoders")
        pair = cached_pair(configs[0].pair)  # the driver's cache: the sittings reuse this pair
        gamma = next((c.decoder["gamma"] for c in configs if "gamma" in c.decoder), 4)
        arguments = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}  # JSON has no paths
        results = {"args": {**arguments, "overrides": overrides}, "environment": environment(), "pair": pair.name,
                   "modes": {}, "roofline": None}
        if not args.skip_roofline:
            print(f"roofline of {pair.name}", flush=True)
            results["roofline"] = roofline({"target": pair.target, "draft": pair.draft}, gamma)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for mode in modes:
            speculative = None if args.llamacpp_tools is None else LlamaSpeculative(args.llamacpp_tools, pair)
            summaries = sitting(specs, overrides, mode, speculative)
            results["modes"][mode] = report(mode, specs, summaries)
            if speculative is not None:
                row = speculative.row(mode)
                ar = results["modes"][mode].get("ar")
                if ar is not None:
                    row["speedup_vs_ar"] = row["tokens_per_second"] / ar["tokens_per_second"]
                spd = results["modes"][mode].get("spd")
                if spd is not None:
                    row["spd_over_it"] = spd["tokens_per_second"] / row["tokens_per_second"]
                results["modes"][mode]["llama-speculative"] = row
            write_atomic(out, json.dumps(results, indent=2))  # after every step: a later failure keeps it
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
