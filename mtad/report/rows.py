"""The rows of the paper's main table, rebuilt from the results store (``make table``).

One row per task x model pair x decoder (x decoder parameters, when several were run): tokens/s,
J/token and the task's quality, each with a 95% bootstrap confidence interval (over examples,
and over seeds when a cell holds several runs), the speed-ups against AR and SpD measured in the
same sweep, and the paper's own numbers beside ours. A cell we did not run says "not run". A
cell holds the runs of the newest code versions only (``mtad/job/comparison.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mtad.job.comparison import current_versions, params_label, speedup, varying_params
from mtad.job.records import latest_runs, read_lines

# task -> (summary quality key, factor to the paper's unit, column title)
QUALITY = {"humaneval": ("pass@1", 100.0, "pass@1 %"), "spider": ("execution_accuracy", 1.0, "exec. acc. %"),
           "mtbench": ("mt_bench_score", 1.0, "MT-Bench")}
DECODER_ORDER = ["ar", "bild", "typical", "spd", "hf_assisted", "spectr", "specinfer", "mcss", "mtjd", "mtad"]
PASS_FAIL = ("humaneval", "spider")  # tasks whose examples are solved or not (McNemar, who-solves-what)
NOT_RUN, NOT_IN_PAPER = "not run", "not in paper"
BOOTSTRAP_SAMPLES = 1000


def example_quality(task: str, verdict: dict) -> float | None:
    """One example's contribution to the task's quality, in the paper's unit (None: excluded)."""
    if task == "humaneval":
        return 100.0 * bool(verdict.get("passed"))
    if task == "spider":
        return None if verdict.get("gold_failed") else 100.0 * bool(verdict.get("correct"))
    if task == "mtbench":  # the judge's turn ratings, once graded (mtad.job.harness.judge_job)
        rated = [r for r in verdict.get("ratings") or [] if r is not None]
        return sum(rated) / len(rated) if rated else None
    return None


CELL = ["task", "pair", "decoder", "params", "sampling_key", "max_new_tokens"]  # what one table cell holds
# ratings: MT-Bench's per-turn judge ratings (None where missing), for turn-matched comparisons
EXAMPLE_COLUMNS = ["run_id", "id", "tokens", "seconds", "target_calls", "joules", "quality", "log_prob", "ratings"]


@dataclass
class Store:
    """A results store, read once: the current runs (per cell, those of the newest code versions),
    one tidy frame of their per-example records, and how many runs older code versions made."""
    runs: pd.DataFrame
    examples: pd.DataFrame
    ignored: int

    def newest(self) -> str:
        """When the newest current run was recorded (ISO time; '' when none says)."""
        return max((str(c) for c in self.runs.get("created", []) if c), default="")


def collect(results_dir: Path) -> Store:
    """Read a results store (``runs.jsonl`` and ``samples/``); every table, comparison and plot of
    ``make table`` works from this one reading."""
    runs = pd.DataFrame(list(latest_runs(results_dir).values()))
    runs = runs.astype(object).where(runs.notna(), None)  # a field some records lack: None, not NaN
    runs["params"] = runs["decoder_params"].map(lambda p: json.dumps(p, sort_keys=True))
    runs["sampling_key"] = runs["sampling"].map(lambda p: json.dumps(p, sort_keys=True))
    keep = set()
    for _, group in runs.groupby(CELL, sort=False):
        keep.update(r["run_id"] for r in current_versions(group.to_dict("records"))[0])
    current = runs[runs["run_id"].isin(keep)]
    records = []
    for run in current.to_dict("records"):
        samples = read_lines(Path(results_dir) / "samples" / f"{run['run_id']}.jsonl")
        records += [{"run_id": run["run_id"], "id": s["id"], "tokens": len(s["new_tokens"]),
                     "seconds": s["stats"]["wall_seconds"], "target_calls": s["stats"].get("target_calls"),
                     "joules": s.get("energy_joules"), "quality": example_quality(run["task"], s["verdict"]),
                     "log_prob": s.get("target_log_prob_mean"), "ratings": s["verdict"].get("ratings")}
                    for s in samples]
    return Store(current, pd.DataFrame(records, columns=EXAMPLE_COLUMNS), len(runs) - len(current))


def bootstrap(groups: list[tuple], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float] | None:
    """95% percentile interval of the ratio sum(numerator) / sum(denominator) over resampled
    examples; ``groups`` holds one (numerators, denominators) pair of arrays per seed. With several
    seeds, seeds are resampled first, then examples within each chosen seed. (scipy's bootstrap
    resamples one level only, so this two-level one is ours.)"""
    groups = [(np.asarray(n, float), np.asarray(d, float)) for n, d in groups if len(n)]
    if not groups or sum(d.sum() for _, d in groups) == 0:
        return None
    rng = np.random.default_rng(seed)
    chosen = rng.integers(len(groups), size=(samples, len(groups)))
    numerator, denominator = np.zeros(samples), np.zeros(samples)
    for slot in range(len(groups)):
        for g, (n, d) in enumerate(groups):
            picked = chosen[:, slot] == g
            index = rng.integers(len(n), size=(int(picked.sum()), len(n)))
            numerator[picked] += n[index].sum(axis=1)
            denominator[picked] += d[index].sum(axis=1)
    valid = denominator > 0
    low, high = np.percentile(numerator[valid] / denominator[valid], [2.5, 97.5])
    return float(low), float(high)


def _ratio(examples: pd.DataFrame, numerator: str, denominator: str | None, partial: bool = False) -> tuple:
    """(value, 95% interval) of sum(numerator) / sum(denominator) over a cell's examples, seeds
    (runs) as bootstrap groups (``denominator`` None: a mean). Examples lacking the numerator are
    left out with ``partial`` (quality: ungraded examples), else they make it (None, None)."""
    rows = examples.dropna(subset=[numerator])
    if rows.empty or (len(rows) < len(examples) and not partial):
        return None, None
    den = rows[denominator] if denominator else pd.Series(1.0, index=rows.index)
    value = rows[numerator].sum() / den.sum() if den.sum() else None
    groups = [(g[numerator].to_numpy(), den.loc[g.index].to_numpy()) for _, g in rows.groupby("run_id")]
    return value, bootstrap(groups)


def _turn_sums(examples: pd.DataFrame) -> tuple[pd.DataFrame, str, str]:
    """MT-Bench examples with each question's sum and count of rated turns (sum NaN when none):
    the arguments of ``_ratio`` for an interval of FastChat's score, a mean over rated turns."""
    rated = examples["ratings"].map(lambda r: [x for x in r or [] if x is not None])
    return examples.assign(rating_sum=rated.map(lambda r: sum(r) if r else np.nan), rated=rated.map(len)), \
        "rating_sum", "rated"


def _labels(runs: list[dict], key: str) -> str | None:
    """The runs' distinct ``quality[key]`` values joined by '+' (None when no run has one)."""
    return "+".join(sorted({r["quality"][key] for r in runs if key in r["quality"]})) or None


def summarize(cell: pd.DataFrame, examples: pd.DataFrame, runs: list[dict]) -> dict:
    """The row of one cell (its current runs): values, intervals, speed-ups, seeds."""
    cell_runs = cell.to_dict("records")
    mine = examples[examples["run_id"].isin(cell["run_id"])]
    quality_key, factor, _ = QUALITY.get(cell_runs[0]["task"], (None, 1.0, ""))
    run_quality = [r["quality"].get(quality_key) for r in cell_runs if quality_key]
    run_quality = [q * factor for q in run_quality if q is not None]
    ours = {"quality": sum(run_quality) / len(run_quality) if run_quality else None,
            "seeds": cell["seed"].nunique(), "examples": int(cell["examples"].sum()),
            "database_mode": _labels(cell_runs, "database_mode"),  # Spider: official or synthetic databases
            "judge": _labels(cell_runs, "judge")}  # MT-Bench: which judge rated it
    if mine.empty:  # runs recorded before per-example records were kept: their totals, no intervals
        tokens = sum(r["totals"]["new_tokens"] for r in cell_runs)
        joules = [r.get("energy_joules") for r in cell_runs]
        ours.update(tokens_per_s=tokens / sum(r["totals"]["wall_seconds"] for r in cell_runs), tokens_per_s_ci=None,
                    joules_per_token=None if None in joules else sum(joules) / tokens, joules_per_token_ci=None,
                    quality_ci=None)
    else:
        ours["tokens_per_s"], ours["tokens_per_s_ci"] = _ratio(mine, "tokens", "seconds")
        ours["joules_per_token"], ours["joules_per_token_ci"] = _ratio(mine, "joules", "tokens")
        ours["quality_ci"] = _ratio(*_turn_sums(mine), partial=True)[1] if cell_runs[0]["task"] == "mtbench" \
            else _ratio(mine, "quality", None, partial=True)[1]
    calls = [r["totals"].get("target_calls") for r in cell_runs]  # block efficiency: independent of the machine
    ours["block_efficiency"] = sum(r["totals"]["new_tokens"] for r in cell_runs) / sum(calls) \
        if None not in calls and sum(calls) else None
    for reference in ("ar", "spd"):
        ratios = [s for s in (speedup(r, runs, reference) for r in cell_runs if r.get("sweep")) if s is not None]
        ours[f"vs_{reference}"] = sum(ratios) / len(ratios) if ratios else None
    return ours


def load_paper(path: Path) -> dict[tuple, dict]:
    """(task, pair, decoder) -> {metric: value} from the paper's table (CSV, one metric per line)."""
    if not path.exists():
        return {}
    frame = pd.read_csv(path)
    return {key: dict(zip(group["metric"], group["value"].astype(float)))
            for key, group in frame.groupby(["task", "model_pair", "decoder"], sort=False)}


# what a separate speed store (``mtad.job.interleave``, one sitting) replaces in a row
SPEED_FIELDS = ("tokens_per_s", "tokens_per_s_ci", "joules_per_token", "joules_per_token_ci", "vs_ar", "vs_spd")


@dataclass
class Table:
    rows: list[dict]      # one per cell, ours and the paper's
    runs: list[dict]      # the current runs behind them
    ignored: int          # runs left out because newer code versions made the same cell
    speed_sources: list[dict] = field(default_factory=list)  # the sweeps the speed columns come from


def cells_of(store: Store) -> tuple[dict[tuple, dict], list[dict]]:
    """{full cell key: row values} of a store, and its current runs."""
    runs = store.runs.to_dict("records")
    cells = [cell for _, cell in store.runs.groupby(CELL, sort=False)]
    return {tuple(cell.iloc[0][c] for c in CELL): summarize(cell, store.examples, runs) for cell in cells}, runs


def full_run(ours: dict) -> bool:
    """Whether a row's cell has a full (quality) run, not only a speed sweep (``speed_only``)."""
    return ours["seeds"] is not None


def speed_only(measured: dict) -> dict:
    """The row of a cell only a speed sweep ran: its speed and block efficiency (a count, the same
    on any machine), and no seeds, examples or quality, which only a full run gives."""
    return {**measured, "seeds": None, "examples": None, "quality": None, "quality_ci": None,
            "database_mode": None, "judge": None, "speed_examples": measured["examples"]}


def speed_sources(runs: list[dict]) -> list[dict]:
    """One line per sweep of a speed store: where and when its numbers were measured."""
    sweeps: dict[str, list[dict]] = {}
    for run in runs:
        sweeps.setdefault(run.get("sweep") or "-", []).append(run)
    out = []
    for sweep, group in sorted(sweeps.items()):
        env = group[0].get("environment") or {}
        days = sorted({str(r.get("created", ""))[:10] for r in group})
        out.append({"sweep": Path(sweep).name, "tasks": sorted({r["task"] for r in group}),
                    "decoders": len(group), "examples": sorted({r["examples"] for r in group}),
                    "machine": f"{env.get('cpu', '?')}, {env.get('torch_threads', '?')} threads"
                               + (f", {', '.join(env['gpu'])}" if env.get("gpu") else ""),
                    "dates": f"{days[0]} to {days[-1]}" if len(days) > 1 else days[0]})
    return out


def build_rows(store: Store, paper_csv: Path, speed_store: Store | None = None) -> Table:
    """The table's rows. With ``speed_store`` (a store of interleaved sweeps), every speed column
    comes from it, matched on the whole cell (task, pair, decoder and all its parameters, sampling,
    max_new_tokens), and none from the quality runs: their speeds were measured over sessions. A
    cell only the speed sweep ran gets a row too, its quality columns "not run"."""
    cells, runs = cells_of(store)
    sources = []
    if speed_store is not None:
        speed, speed_runs = cells_of(speed_store)
        sources = speed_sources(speed_runs)
        for key, ours in cells.items():
            measured = speed.get(key)
            ours.update({f: measured[f] if measured else None for f in SPEED_FIELDS})
            ours["speed_examples"] = measured["examples"] if measured else None
        cells.update({key: speed_only(measured) for key, measured in speed.items() if key not in cells})
    # labels over both stores, so one cell reads the same whichever store ran it
    labels = varying_params([{"task": k[0], "pair": k[1], "decoder": k[2], "decoder_params": json.loads(k[3])}
                             for k in cells])
    paper = load_paper(paper_csv)
    rows = {}
    for (key, ours), label in zip(cells.items(), labels):
        name = params_label(label) if label else ""
        if (key[0], key[1], key[2], name) in rows:  # same parameters, another sampling or token budget
            name = ", ".join(filter(None, [name, f"sampling={key[4]}", f"max_new_tokens={key[5]}"]))
        rows[(key[0], key[1], key[2], name)] = ours
    for task, pair, decoder in paper:
        if not any(k[:3] == (task, pair, decoder) for k in rows):
            rows[(task, pair, decoder, "")] = None
    order = lambda k: (k[0], k[1], DECODER_ORDER.index(k[2]) if k[2] in DECODER_ORDER else 99, k[3])  # noqa: E731
    table = [{"task": task, "pair": pair, "decoder": decoder, "params": params,
              "ours": rows[(task, pair, decoder, params)], "paper": paper.get((task, pair, decoder))}
             for task, pair, decoder, params in sorted(rows, key=order)]
    return Table(table, runs, store.ignored, sources)
