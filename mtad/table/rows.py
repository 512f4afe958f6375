"""The rows of the paper's main table, rebuilt from the results store (``make table``).

One row per task x model pair x decoder (x decoder parameters, when several were run): tokens/s,
J/token and the task's quality, each with a 95% bootstrap confidence interval (over examples,
and over seeds when a cell holds several runs), the speed-ups against AR and SpD measured in the
same sweep, and the paper's own numbers beside ours. A cell we did not run says "not run". A
cell holds the runs of the newest code versions only (``mtad/comparison.py``).
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from mtad.comparison import current_versions, params_label, speedup, varying_params
from mtad.records import latest_runs, read_lines

# task -> (summary quality key, factor to the paper's unit, column title)
QUALITY = {"humaneval": ("pass@1", 100.0, "pass@1 %"), "spider": ("execution_accuracy", 1.0, "exec. acc. %"),
           "mtbench": ("mt_bench_score", 1.0, "MT-Bench")}
DECODER_ORDER = ["ar", "bild", "typical", "spd", "spectr", "specinfer", "mcss", "mtjd", "mtad"]
NOT_RUN, NOT_IN_PAPER = "not run", "not in paper"
BOOTSTRAP_SAMPLES = 1000


def example_quality(task: str, verdict: dict) -> float | None:
    """One example's contribution to the task's quality, in the paper's unit (None: excluded)."""
    if task == "humaneval":
        return 100.0 * bool(verdict.get("passed"))
    if task == "spider":
        return None if verdict.get("gold_failed") else 100.0 * bool(verdict.get("correct"))
    return None  # MT-Bench ratings live in the judge's files; the run's mean is used, without interval


@dataclass
class Cell:
    task: str
    pair: str
    decoder: str
    params: str
    runs: list[dict] = field(default_factory=list)
    examples: list[list[dict]] = field(default_factory=list)  # per run: {tokens, seconds, joules, quality}


def _params_key(run: dict) -> str:
    return json.dumps(run["decoder_params"], sort_keys=True)


def collect(results_dir: Path) -> tuple[list[Cell], list[dict], int]:
    """The table's cells, every current run, and how many runs older code versions made (left out)."""
    grouped: dict[tuple, list[dict]] = {}
    for run in latest_runs(results_dir).values():
        key = (run["task"], run["pair"], run["decoder"], _params_key(run),
               json.dumps(run["sampling"], sort_keys=True), run["max_new_tokens"])
        grouped.setdefault(key, []).append(run)
    cells, runs, ignored = [], [], 0
    for group in grouped.values():
        current, older = current_versions(group)
        ignored += older
        cell = Cell(current[0]["task"], current[0]["pair"], current[0]["decoder"], _params_key(current[0]))
        for run in current:
            cell.runs.append(run)
            samples = read_lines(Path(results_dir) / "samples" / f"{run['run_id']}.jsonl")
            cell.examples.append([{"tokens": len(s["new_tokens"]), "seconds": s["stats"]["wall_seconds"],
                                   "joules": s.get("energy_joules"),
                                   "quality": example_quality(run["task"], s["verdict"])} for s in samples])
        cells.append(cell)
        runs += current
    return cells, runs, ignored


def _tokens_per_second(examples):
    seconds = sum(e["seconds"] for e in examples)
    return sum(e["tokens"] for e in examples) / seconds if seconds else None


def _joules_per_token(examples):
    if not examples or any(e["joules"] is None for e in examples):
        return None
    tokens = sum(e["tokens"] for e in examples)
    return sum(e["joules"] for e in examples) / tokens if tokens else None


def _quality(examples):
    values = [e["quality"] for e in examples if e["quality"] is not None]
    return sum(values) / len(values) if values else None


def bootstrap(groups: list[list[dict]], statistic, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0):
    """95% percentile interval of ``statistic`` over resampled examples; with several groups
    (seeds), groups are resampled first, then examples within each."""
    groups = [g for g in groups if g]
    if not groups or statistic([e for g in groups for e in g]) is None:
        return None
    rng = random.Random(seed)
    values = []
    for _ in range(samples):
        chosen = [rng.choice(groups) for _ in groups] if len(groups) > 1 else groups
        pooled = [rng.choice(g) for g in chosen for _ in g]
        value = statistic(pooled)
        if value is not None:
            values.append(value)
    values.sort()
    return values[int(0.025 * (len(values) - 1))], values[int(0.975 * (len(values) - 1))]


def summarize(cell: Cell, runs: list[dict]) -> dict:
    """The row of one cell: values, intervals, speed-ups, seeds."""
    pooled = [e for examples in cell.examples for e in examples]
    quality_key, factor, _ = QUALITY.get(cell.task, (None, 1.0, ""))
    run_quality = [r["quality"].get(quality_key) for r in cell.runs if quality_key]
    run_quality = [q * factor for q in run_quality if q is not None]
    if not pooled:  # runs recorded before per-example records were kept: their totals, no intervals
        pooled = [{"tokens": r["totals"]["new_tokens"], "seconds": r["totals"]["wall_seconds"],
                   "joules": r.get("energy_joules"), "quality": None} for r in cell.runs]
    ours = {
        "tokens_per_s": _tokens_per_second(pooled), "tokens_per_s_ci": bootstrap(cell.examples, _tokens_per_second),
        "joules_per_token": _joules_per_token(pooled), "joules_per_token_ci": bootstrap(cell.examples, _joules_per_token),
        "quality": sum(run_quality) / len(run_quality) if run_quality else None,
        "quality_ci": bootstrap(cell.examples, _quality),
        "seeds": len({r["seed"] for r in cell.runs}), "examples": sum(r["examples"] for r in cell.runs),
        # Spider: which databases scored it (official or synthetic)
        "database_mode": "+".join(sorted({r["quality"]["database_mode"] for r in cell.runs
                                          if "database_mode" in r["quality"]})) or None,
    }
    for reference in ("ar", "spd"):
        ratios = [s for s in (speedup(r, runs, reference) for r in cell.runs if r.get("sweep")) if s is not None]
        ours[f"vs_{reference}"] = sum(ratios) / len(ratios) if ratios else None
    return ours


def load_paper(path: Path) -> dict[tuple, dict]:
    paper: dict[tuple, dict] = {}
    if path.exists():
        for row in csv.DictReader(io.StringIO(path.read_text())):
            paper.setdefault((row["task"], row["model_pair"], row["decoder"]), {})[row["metric"]] = float(row["value"])
    return paper


@dataclass
class Table:
    rows: list[dict]      # one per cell, ours and the paper's
    runs: list[dict]      # the current runs behind them
    ignored: int          # runs left out because newer code versions made the same cell


def build_rows(results_dir: Path, paper_csv: Path) -> Table:
    cells, runs, ignored = collect(results_dir)
    paper = load_paper(paper_csv)
    labels = varying_params([cell.runs[0] for cell in cells])
    rows = {}
    for cell, params in zip(cells, labels):
        rows[(cell.task, cell.pair, cell.decoder, params_label(params) if params else "")] = summarize(cell, runs)
    for task, pair, decoder in paper:
        if not any(k[:3] == (task, pair, decoder) for k in rows):
            rows[(task, pair, decoder, "")] = None
    order = lambda k: (k[0], k[1], DECODER_ORDER.index(k[2]) if k[2] in DECODER_ORDER else 99, k[3])  # noqa: E731
    table = []
    for key in sorted(rows, key=order):
        task, pair, decoder, params = key
        table.append({"task": task, "pair": pair, "decoder": decoder, "params": params, "ours": rows[key],
                      "paper": paper.get((task, pair, decoder))})
    return Table(table, runs, ignored)
