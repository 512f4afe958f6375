"""Host work per round of every decoder, on the tiny random pair (issue 35).

On a model that costs nearly nothing, the work between forwards is all there is to see: for
each backend, mode and decoder this prints, per round (one ``Decoder.step``),

- host ops: aten ops issued while no runner forward (``Runner._forward``) runs, counted by a
  ``TorchDispatchMode`` (``mtad/job/overhead.py``); ``Runner.feed``'s own checks and position ids
  count, a backend's work inside ``_forward`` does not;
- reads: of those, ``aten._local_scalar_dense`` (``.item()``, ``int()``/``float()``/``bool()`` of a
  tensor), plus ``Tensor.tolist`` calls; each is a device sync on a GPU;
- host ms: the wall time of ``generate`` minus the time inside runner forwards, per round, min and
  median over ``--repeats`` generations (the counts come from one more, counted, run).

Counts are deterministic and the same on every machine; the milliseconds are this machine's.
Modes: greedy (temperature 0) and sampling (temperature 1, top-k 10, top-p 0.9). Every generation
runs ``--max-new-tokens`` tokens (no stop ids) from one fixed prompt with seed 0. The static
backend runs uncompiled (its code, padding included, without torch.compile). Skipped:
``hf_assisted``, which runs transformers' own loop on the models, outside the runners, so there
are no runner forwards to count between (and its host work is not ours to cut).

    PYTHONPATH=. python scripts/bench_overhead.py
    PYTHONPATH=. python scripts/bench_overhead.py --decoders ar,spd --backends eager --modes sampling --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

from mtad.catalogue import DECODERS, build_decoder
from mtad.decoding.sampling import SamplingConfig
from mtad.errors import UserError, one_line_errors
from mtad.job.overhead import measure
from mtad.job.records import environment, write_atomic
from mtad.runners.catalogue import BACKENDS
from mtad.runners.pair import Pair
from mtad.runners.toy_models import tiny_llama_pair

MODES = {"greedy": SamplingConfig(temperature=0.0), "sampling": SamplingConfig(temperature=1.0, top_k=10, top_p=0.9)}
SKIPPED = {"hf_assisted": "runs transformers' own generate loop outside the runners: no runner forwards to count between"}
BACKEND_OPTIONS = {"static": {"max_length": 512, "compile": False}}  # uncompiled: its code, eagerly, on the CPU
PROMPT = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 32, 73, 32]  # 16 byte-level ids


def tiny(backend: str) -> Pair:
    """The tiny random pair (mtad/runners/toy_models.py) on ``backend``'s runners."""
    target, draft = tiny_llama_pair(0)
    make = BACKENDS[backend].runner
    options = BACKEND_OPTIONS.get(backend, {})
    return Pair(make(target, **options), make(draft, **options), name="tiny")


def chosen(given: str | None, known, what: str, default) -> list[str]:
    if given is None:
        return list(default)
    names = [n for n in given.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UserError(f"unknown {what} {', '.join(map(repr, unknown)) or repr(given)} (known: {', '.join(known)})")
    return names


def bench(pair: Pair, decoder_name: str, sampling: SamplingConfig, max_new_tokens: int, repeats: int) -> dict:
    decoder = build_decoder(decoder_name)
    run = {"max_new_tokens": max_new_tokens, "sampling": sampling, "seed": 0}
    out, counted = measure(pair, decoder, PROMPT, count=True, **run)
    measure(pair, decoder, PROMPT, count=False, **run)  # warm-up: allocator, caches, first-call paths
    ms = []
    for _ in range(repeats):
        again, timed = measure(pair, decoder, PROMPT, count=False, **run)
        if again.tokens != out.tokens or timed.rounds != counted.rounds:
            raise RuntimeError(f"{decoder_name}: a repeat generated other tokens or rounds")
        ms.append(1e3 * timed.per_round("host_seconds"))
    return {"params": dataclasses.asdict(decoder), "rounds": counted.rounds, "new_tokens": len(out.tokens),
            "host_ops": counted.host_ops, "reads": counted.reads, "forward_reads": counted.forward_reads,
            "host_ops_per_round": counted.per_round("host_ops"), "reads_per_round": counted.per_round("reads"),
            "host_ms_per_round_min": min(ms), "host_ms_per_round_median": statistics.median(ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoders", help=f"comma-separated (default: all but {', '.join(SKIPPED)})")
    parser.add_argument("--backends", help=f"comma-separated (default: {', '.join(BACKENDS)})")
    parser.add_argument("--modes", help=f"comma-separated (default: {', '.join(MODES)})")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed generations per row (min and median)")
    parser.add_argument("--out", default="results/bench/overhead.json")
    parser.add_argument("--note", default="", help="the machine and its load, in words, kept in the JSON")
    args = parser.parse_args()
    with one_line_errors():  # every refusal before any work
        runnable = [n for n in DECODERS if n not in SKIPPED]
        for name in (args.decoders or "").split(","):
            if name in SKIPPED:
                raise UserError(f"decoder {name!r} is not benchmarked here: it {SKIPPED[name]}")
        decoders = chosen(args.decoders, runnable, "decoder", runnable)
        backends = chosen(args.backends, list(BACKENDS), "backend", BACKENDS)
        modes = chosen(args.modes, list(MODES), "mode", MODES)
        if args.max_new_tokens < 1 or args.repeats < 1:
            raise UserError("--max-new-tokens and --repeats must be >= 1")
        for backend in backends:
            for name in decoders:
                lacking = DECODERS[name].needs - BACKENDS[backend].capabilities()
                if lacking:
                    raise UserError(f"decoder {name!r} needs {', '.join(sorted(lacking))}, which backend {backend} lacks")

    load_before = os.getloadavg()  # another process's work on the cores shows in the host ms, not the counts
    rows = []
    print(f"per round, {args.max_new_tokens} new tokens, host ms min / median of {args.repeats}", flush=True)
    print("| backend | mode | decoder | rounds | host ops | reads | host ms min | host ms median |")
    print("|---|---|---|---:|---:|---:|---:|---:|", flush=True)
    for backend in backends:
        pair = tiny(backend)
        for mode in modes:
            for name in decoders:
                row = {"backend": backend, "mode": mode, "decoder": name,
                       **bench(pair, name, MODES[mode], args.max_new_tokens, args.repeats)}
                rows.append(row)
                print(f"| {backend} | {mode} | {name} | {row['rounds']} | {row['host_ops_per_round']:.1f} | "
                      f"{row['reads_per_round']:.2f} | {row['host_ms_per_round_min']:.3f} | "
                      f"{row['host_ms_per_round_median']:.3f} |", flush=True)
    result = {
        "what": "host work per decoder round on the tiny random pair (scripts/bench_overhead.py)",
        "pair": "tiny (mtad/runners/toy_models.py tiny_llama_pair(0)); static backend uncompiled",
        "prompt": PROMPT, "max_new_tokens": args.max_new_tokens, "repeats": args.repeats, "seed": 0,
        "modes": {m: dataclasses.asdict(MODES[m]) for m in modes},
        "skipped": {n: why for n, why in SKIPPED.items()},
        "machine_note": args.note, "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "environment": environment(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
