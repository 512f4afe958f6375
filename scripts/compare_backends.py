"""Block efficiency of the same decoders on two backends, over the same prompts of a speed store.

Block efficiency (tokens per target call) is the one speed-side number a backend must not change:
the backends differ in arithmetic (bf16 vs Q4_K_M dot products), not in algorithm, so a decoder's
acceptance may move only as far as their numerics move its draws. For every cell the two pairs
both ran in one task (same decoder, parameters, sampling and token budget), this prints B / A
with a paired 95% interval (bootstrap over the prompts both ran, ``mtad.report.paired``), and
beside it each cell's forward share: the part of its wall time spent in its own forwards.

    python scripts/compare_backends.py                                      # results/speed, static vs llamacpp
    python scripts/compare_backends.py --a qwen2.5-coder+draft-int8+static --b qwen2.5-coder+llamacpp \
        --out results/bench/backends-block-efficiency.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mtad.decoding.base import GenerationStats
from mtad.errors import one_line_errors
from mtad.job.records import write_atomic
from mtad.report.paired import frames_of, label, matrices, paired
from mtad.report.rows import CELL, collect

PAIR = CELL.index("pair")


def forward_share(runs) -> float | None:
    """A cell's forward share (``GenerationStats.forward_share``) over all its runs' totals."""
    totals = GenerationStats()
    for run in runs.to_dict("records"):
        totals.add(GenerationStats.from_dict(run["totals"]))
    return totals.forward_share


def compare(store_dir: Path, pair_a: str, pair_b: str) -> list[dict]:
    """One row per cell ``pair_b`` shares with ``pair_a``: both block efficiencies and B / A, and
    both forward shares."""
    frames, params = frames_of(collect(store_dir))
    rows = []
    for cell_a in frames:
        if cell_a[PAIR] != pair_a:
            continue
        cell_b = cell_a[:PAIR] + (pair_b,) + cell_a[PAIR + 1:]
        if cell_b not in frames:
            continue
        (ma, mb), ids = matrices(frames, cell_a, cell_b, "tokens", "target_calls")
        ratio = paired(mb, ma, "ratio")
        efficiency = [float(np.nansum(num) / np.nansum(den)) for num, den in (ma, mb)]
        rows.append({"task": cell_a[0], "decoder": label(cell_a, params[cell_a]), "prompts": len(ids),
                     "block_efficiency_a": efficiency[0], "block_efficiency_b": efficiency[1],
                     "b_over_a": ratio.value, "ci": ratio.ci,
                     "forward_share_a": forward_share(frames[cell_a][1]), "forward_share_b": forward_share(frames[cell_b][1])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("results/speed"), help="a results store (runs.jsonl)")
    parser.add_argument("--a", default="qwen2.5-coder+draft-int8+static", help="the reference pair label")
    parser.add_argument("--b", default="qwen2.5-coder+llamacpp", help="the pair label compared with it")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows here (JSON)")
    args = parser.parse_args()
    with one_line_errors():
        if not (args.store / "runs.jsonl").exists():
            raise SystemExit(f"error: no results store at {args.store / 'runs.jsonl'}")
        rows = compare(args.store, args.a, args.b)
        if not rows:
            raise SystemExit(f"error: {args.store} holds no cell that both {args.a} and {args.b} ran")
    print(f"block efficiency, B = {args.b} / A = {args.a} (95% paired bootstrap over the prompts both ran)")
    for r in rows:
        ci = f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]" if r["ci"] else "-"
        print(f"{r['task']:<10} {r['decoder']:<16} prompts {r['prompts']:>3}  A {r['block_efficiency_a']:.2f}  "
              f"B {r['block_efficiency_b']:.2f}  B / A {r['b_over_a']:.3f} {ci}  "
              f"forward share A {r['forward_share_a']:.3f} B {r['forward_share_b']:.3f}")
    if args.out:
        write_atomic(args.out, json.dumps({"store": str(args.store), "a": args.a, "b": args.b, "rows": rows}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
