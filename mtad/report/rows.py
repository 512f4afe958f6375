"""The rows of the paper's main table, rebuilt from the results store (``make table``).

One row per task x model pair x decoder (x decoder parameters, when several were run): tokens/s,
J/token and the task's quality, each with a 95% bootstrap confidence interval over problems (a
drawn problem brings all the cell's runs of it: every seed), the speed-ups against AR and SpD
measured in the same sweep, and the paper's own numbers beside ours. A cell we did not run says "not run". A
cell holds the runs of the newest code versions only (``mtad/job/comparison.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mtad.job.comparison import current_versions, params_label, speedup, varying_params
from mtad.errors import UserError
from mtad.job.records import latest_runs, read_lines, timed_example
from tasks.base import Metric, mean_score

DECODER_ORDER = ["ar", "bild", "typical", "spd", "hf_assisted", "spectr", "specinfer", "mcss", "mtjd", "mtad"]
NOT_RUN, NOT_IN_PAPER = "not run", "not in paper"
BOOTSTRAP_SAMPLES = 1000

CELL = ["task", "pair", "decoder", "params", "sampling_key", "max_new_tokens"]  # what one table cell holds
# per example: its scores (``Task.scores``: per rated unit, None where unrated), their sum over the
# rated units (NaN when none is) and how many were rated, and its quality (their mean); timed_tokens,
# seconds and joules are NaN for an example whose generation compiled a shape (records.timed_example)
EXAMPLE_COLUMNS = ["run_id", "id", "tokens", "timed_tokens", "seconds", "target_calls", "joules", "quality",
                   "score_sum", "rated", "log_prob", "scores"]


def run_metric(run: dict) -> Metric | None:
    """The metric a run summary declares (None: its task measures speed only)."""
    if "metric" not in run:
        raise UserError(f"run {run['run_id']} ({run.get('task')}) predates metric declarations; add them with: "
                        "python -m mtad.job.migrate <results dir>")
    return None if run["metric"] is None else Metric.from_record(run["metric"])


def _example(run: dict, sample: dict) -> dict:
    if "scores" not in sample:
        raise UserError(f"an example record of run {run['run_id']} has no scores; add them with: "
                        "python -m mtad.job.migrate <results dir>")
    rated = [s for s in sample["scores"] if s is not None]
    timed = timed_example(sample)  # one whose generation compiled a shape counts for neither speed nor energy
    return {"run_id": run["run_id"], "id": sample["id"], "tokens": len(sample["new_tokens"]),
            "timed_tokens": len(sample["new_tokens"]) if timed else np.nan,
            "seconds": sample["stats"]["wall_seconds"] if timed else np.nan,
            "target_calls": sample["stats"].get("target_calls"),
            "joules": sample.get("energy_joules") if timed else np.nan, "quality": mean_score(sample["scores"]),
            "score_sum": sum(rated) if rated else np.nan, "rated": len(rated),
            "log_prob": sample.get("target_log_prob_mean"), "scores": sample["scores"]}


@dataclass
class Store:
    """A results store, read once: the current runs (per cell, those of the newest code versions),
    one tidy frame of their per-example records, and how many runs older code versions made."""
    runs: pd.DataFrame
    examples: pd.DataFrame
    ignored: int
    metrics: dict[str, Metric | None]  # task -> the metric its newest current run declares

    def newest(self) -> str:
        """When the newest current run was recorded (ISO time; '' when none says)."""
        return max((str(c) for c in self.runs.get("created", []) if c), default="")


def collect(results_dir: Path) -> Store:
    """Read a results store (``runs.jsonl`` and ``samples/``); every table, comparison and plot of
    ``make table`` works from this one reading."""
    summaries = list(latest_runs(results_dir).values())
    metrics = [run_metric(run) for run in summaries]
    runs = pd.DataFrame(summaries)
    runs = runs.astype(object).where(runs.notna(), None)  # a field some records lack: None, not NaN
    runs["metric"] = pd.Series(metrics, index=runs.index, dtype=object)
    runs["params"] = runs["decoder_params"].map(lambda p: json.dumps(p, sort_keys=True))
    runs["sampling_key"] = runs["sampling"].map(lambda p: json.dumps(p, sort_keys=True))
    keep = set()
    for _, group in runs.groupby(CELL, sort=False):
        keep.update(r["run_id"] for r in current_versions(group.to_dict("records"))[0])
    current = runs[runs["run_id"].isin(keep)]
    records = []
    for run in current.to_dict("records"):
        samples = read_lines(Path(results_dir) / "samples" / f"{run['run_id']}.jsonl")
        records += [_example(run, sample) for sample in samples]
    declared = {run["task"]: run["metric"] for run in current.to_dict("records")}  # the store's order: newest last
    return Store(current, pd.DataFrame(records, columns=EXAMPLE_COLUMNS), len(runs) - len(current), declared)


def metrics_of(store: Store, speed_store: Store | None = None) -> dict[str, Metric | None]:
    """task -> the metric its runs declare, over both stores (the full runs' where both have the task)."""
    return {**(speed_store.metrics if speed_store is not None else {}), **store.metrics}


def bootstrap(numerators, denominators, clusters=None, samples: int = BOOTSTRAP_SAMPLES,
              seed: int = 0) -> tuple[float, float] | None:
    """95% percentile interval of the ratio sum(numerators) / sum(denominators) over resampled
    clusters: ``clusters`` labels each value's cluster (a cell's example id: a problem, with the
    values of every seed that ran it; None: each value its own cluster). Each replicate draws as
    many clusters as there are, with replacement, and takes the ratio of their summed totals.

    The problem is the unit because outcomes cluster by problem: most coding problems pass at
    every seed or fail at every seed, so seeds of one problem are far from independent. Seeds
    are not resampled again within a drawn problem: a problem's total over its seeds already
    carries its seed-to-seed spread, and a second stage would count that spread twice (Davison &
    Hinkley 1997, section 3.8). A problem with fewer seeds than another weighs less, as in the
    point estimate (a ratio of sums)."""
    numerators, denominators = np.asarray(numerators, float), np.asarray(denominators, float)
    if not len(numerators) or denominators.sum() == 0:
        return None
    labels = np.arange(len(numerators)) if clusters is None else np.unique(np.asarray(clusters), return_inverse=True)[1]
    num, den = np.bincount(labels, numerators), np.bincount(labels, denominators)  # per cluster, in label order
    drawn = np.random.default_rng(seed).integers(len(num), size=(samples, len(num)))
    numerator, denominator = num[drawn].sum(axis=1), den[drawn].sum(axis=1)
    valid = denominator > 0
    low, high = np.percentile(numerator[valid] / denominator[valid], [2.5, 97.5])
    return float(low), float(high)


def _ratio(examples: pd.DataFrame, numerator: str, denominator: str | None, partial: bool = False) -> tuple:
    """(value, 95% interval) of sum(numerator) / sum(denominator) over a cell's examples, the
    interval resampling problems (example ids, each with all the cell's runs of it; ``bootstrap``)
    (``denominator`` None: a mean). Examples lacking the numerator are left out with ``partial``
    (quality: ungraded examples), else they make it (None, None)."""
    rows = examples.dropna(subset=[numerator])
    if rows.empty or (len(rows) < len(examples) and not partial):
        return None, None
    den = rows[denominator] if denominator else pd.Series(1.0, index=rows.index)
    value = rows[numerator].sum() / den.sum() if den.sum() else None
    return value, bootstrap(rows[numerator].to_numpy(), den.to_numpy(), rows["id"].to_numpy())


def machines(runs: list[dict]) -> list[str]:
    """The machines a cell's runs were generated on: the CPU (or GPU) model of each example's
    fingerprint, or, for runs recorded before fingerprints (issue 36), of the machine that wrote
    the summary, which may not be the only one (a run resumed elsewhere)."""
    names = set()
    for run in runs:
        fingerprints = run.get("fingerprints") or [None]
        for fp in fingerprints:
            names.add((fp.get("gpu") or fp.get("cpu")) if fp else (run.get("environment") or {}).get("cpu") or "?")
    return sorted(names)


def _labels(runs: list[dict], key: str) -> str | None:
    """The runs' distinct ``quality[key]`` values joined by '+' (None when no run has one)."""
    return "+".join(sorted({r["quality"][key] for r in runs if key in r["quality"]})) or None


def summarize(cell: pd.DataFrame, examples: pd.DataFrame, runs: list[dict], metric: Metric | None) -> dict:
    """The row of one cell (its current runs): values, intervals, speed-ups, seeds. Quality: the
    mean over runs of the summary's ``metric.key`` in the paper's unit; its interval is over the
    rated scores, problems resampled."""
    cell_runs = cell.to_dict("records")
    mine = examples[examples["run_id"].isin(cell["run_id"])]
    run_quality = [r["quality"].get(metric.key) for r in cell_runs] if metric else []
    run_quality = [q * metric.factor for q in run_quality if q is not None]
    ours = {"quality": sum(run_quality) / len(run_quality) if run_quality else None,
            "seeds": cell["seed"].nunique(), "examples": int(cell["examples"].sum()), "machines": machines(cell_runs),
            "labels": {key: _labels(cell_runs, key) for key, _ in metric.labels} if metric else {}}
    if mine.empty:  # runs recorded before per-example records were kept: their totals, no intervals
        tokens = sum(r["totals"]["new_tokens"] for r in cell_runs)
        joules = [r.get("energy_joules") for r in cell_runs]
        ours.update(tokens_per_s=tokens / sum(r["totals"]["wall_seconds"] for r in cell_runs), tokens_per_s_ci=None,
                    joules_per_token=None if None in joules else sum(joules) / tokens, joules_per_token_ci=None,
                    quality_ci=None)
    else:
        timed = mine.dropna(subset=["seconds"])  # not the examples that compiled a shape
        ours["tokens_per_s"], ours["tokens_per_s_ci"] = _ratio(timed, "tokens", "seconds")
        ours["joules_per_token"], ours["joules_per_token_ci"] = _ratio(timed, "joules", "tokens")
        ours["quality_ci"] = _ratio(mine, "score_sum", "rated", partial=True)[1]  # the mean of rated scores
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
    rows: list[dict]      # one per cell, ours and the paper's, with its task's metric (None: not declared)
    runs: list[dict]      # the current runs behind them
    ignored: int          # runs left out because newer code versions made the same cell
    speed_sources: list[dict] = field(default_factory=list)  # the sweeps the speed columns come from


def cells_of(store: Store) -> tuple[dict[tuple, dict], list[dict]]:
    """{full cell key: row values} of a store, and its current runs."""
    runs = store.runs.to_dict("records")
    cells = [cell for _, cell in store.runs.groupby(CELL, sort=False)]
    return {tuple(cell.iloc[0][c] for c in CELL):
            summarize(cell, store.examples, runs, store.metrics[cell.iloc[0]["task"]]) for cell in cells}, runs


def full_run(ours: dict) -> bool:
    """Whether a row's cell has a full (quality) run, not only a speed sweep (``speed_only``)."""
    return ours["seeds"] is not None


def speed_only(measured: dict) -> dict:
    """The row of a cell only a speed sweep ran: its speed and block efficiency (a count, the same
    on any machine), and no seeds, examples or quality, which only a full run gives."""
    return {**measured, "seeds": None, "examples": None, "quality": None, "quality_ci": None, "labels": {},
            "machines": [], "speed_examples": measured["examples"]}


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
    metrics = metrics_of(store, speed_store)
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
    table = [{"task": task, "pair": pair, "decoder": decoder, "params": params, "metric": metrics.get(task),
              "ours": rows[(task, pair, decoder, params)], "paper": paper.get((task, pair, decoder))}
             for task, pair, decoder, params in sorted(rows, key=order)]
    return Table(table, runs, store.ignored, sources)
