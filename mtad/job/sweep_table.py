"""The table printed at the end of ``run.py -m`` and of ``python -m mtad.job.interleave``: one
row per job, with speed-ups against the AR job of its sitting (``mtad/job/comparison.py`` says
which jobs compare). Only jobs that took turns on one machine (one sitting of
``mtad.job.harness.run_jobs``) get a speed-up: between jobs run one after another, load or heat
may differ, and a ratio would say more about the machine than the decoders."""

from __future__ import annotations

import json
from pathlib import Path

from hydra.experimental.callback import Callback

from mtad.job.comparison import params_label, speedup, varying_params


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


# under a table whose speed-ups were left empty because its jobs did not take turns
UNINTERLEAVED = ("vs AR left empty: these jobs ran one after another, so load or heat may differ between them; "
                 "for speed-ups run them taking turns: python -m mtad.job.interleave --decoders ar,spd,mtad ...")


def sitting_speedup(run: dict, runs: list[dict], reference: str) -> float | None:
    """``speedup`` against a ``reference`` run of the same sitting, None if ``run`` shared its
    sitting with no other job of ``runs`` (alone, or recorded before sittings were marked)."""
    peers = [r for r in runs if run.get("sitting") is not None and r.get("sitting") == run["sitting"]]
    return speedup(run, peers, reference) if len(peers) > 1 else None


def format_table(summaries: list[dict]) -> str:
    quality_names = sorted({k for s in summaries for k in s["quality"]})
    header = ["pair", "task", "decoder", "params", "examples", "tokens", "tok/s", "vs AR", "J/token", "block eff",
              "accept", "accept per position", *quality_names]
    rows = [header]
    withheld = False  # a speed-up a sweep would once have shown, left empty for want of one sitting
    for s, params in zip(summaries, varying_params(summaries)):
        vs_ar = sitting_speedup(s, summaries, "ar")
        withheld |= vs_ar is None and len(summaries) > 1 and speedup(s, summaries, "ar") is not None
        rows.append([
            s["pair"], s["task"], s["decoder"], params_label(params), str(s["examples"]),
            str(s["totals"]["new_tokens"]), f"{s['tokens_per_second']:.2f}", "-" if vs_ar is None else f"{vs_ar:.2f}x",
            _cell(s.get("joules_per_token")), f"{s['block_efficiency']:.2f}", f"{s['acceptance_rate']:.2f}",
            " ".join(f"{a:.2f}" for a in s["acceptance_per_position"]) or "-",
            *(_cell(s["quality"].get(q)) for q in quality_names),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    if withheld:
        lines.append(UNINTERLEAVED)
    return "\n".join(lines)


class SweepTable(Callback):
    """At the end of a multirun, print one table of every job's summary."""

    def on_multirun_end(self, config, **kwargs) -> None:
        summaries = [json.loads(p.read_text()) for p in sorted(Path(config.hydra.sweep.dir).glob("*/summary.json"))]
        if summaries:
            print("\n" + format_table(summaries) + "\n" + summaries[0]["timing"], flush=True)
