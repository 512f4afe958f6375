"""Printing job summaries as one table, with speed-ups against AR measured in the same sweep."""

from __future__ import annotations

import json
from pathlib import Path

from hydra.experimental.callback import Callback

COMPARABLE = ("sweep", "model", "task", "seed", "max_new_tokens")


def comparable_key(summary: dict) -> tuple:
    return tuple(json.dumps(summary.get(k), sort_keys=True) for k in COMPARABLE) + (
        json.dumps(summary["sampling"], sort_keys=True),)


def speedups_vs_ar(summaries: list[dict]) -> list[float | None]:
    """tokens/s over the tokens/s of the AR job with the same sweep, pair, task, sampling and seed."""
    ar = {comparable_key(s): s["tokens_per_second"] for s in summaries if s["decoder"] == "ar"}
    return [s["tokens_per_second"] / ar[comparable_key(s)] if ar.get(comparable_key(s)) else None
            for s in summaries]


def varying_params(summaries: list[dict]) -> list[str]:
    """Per summary, the decoder parameters that differ between jobs of the same decoder, as k=v."""
    values: dict[tuple[str, str], set[str]] = {}
    for s in summaries:
        for key, value in s["decoder_params"].items():
            values.setdefault((s["decoder"], key), set()).add(json.dumps(value))
    return [" ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in s["decoder_params"].items()
                     if len(values[(s["decoder"], k)]) > 1) for s in summaries]


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def format_table(summaries: list[dict]) -> str:
    quality_names = sorted({k for s in summaries for k in s["quality"]})
    header = ["model", "task", "decoder", "params", "examples", "tokens", "tok/s", "vs AR", "J/token", "block eff",
              "accept", "accept per position", *quality_names]
    rows = [header]
    for s, speedup, params in zip(summaries, speedups_vs_ar(summaries), varying_params(summaries)):
        rows.append([
            s["model"], s["task"], s["decoder"], params or "-", str(s["examples"]), str(s["totals"]["new_tokens"]),
            f"{s['tokens_per_second']:.2f}", "-" if speedup is None else f"{speedup:.2f}x",
            _cell(s.get("joules_per_token")), f"{s['block_efficiency']:.2f}", f"{s['acceptance_rate']:.2f}",
            " ".join(f"{a:.2f}" for a in s["acceptance_per_position"]) or "-",
            *(_cell(s["quality"].get(q)) for q in quality_names),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


class SweepTable(Callback):
    """At the end of a multirun, print one table of every job's summary."""

    def on_multirun_end(self, config, **kwargs) -> None:
        summaries = [json.loads(p.read_text()) for p in sorted(Path(config.hydra.sweep.dir).glob("*/summary.json"))]
        if summaries:
            print("\n" + format_table(summaries) + "\n" + summaries[0]["timing"], flush=True)
