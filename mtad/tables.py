"""The paper's main table, rebuilt from the results store (``make table``).

One row per task x model pair x decoder (x decoder parameters, when several were run): tokens/s,
J/token and the task's quality, each with a 95% bootstrap confidence interval (over examples,
and over seeds when a cell holds several runs), the speed-ups against AR and SpD measured in the
same sweep, and the paper's own numbers beside ours. A cell we did not run says "not run".
Written as Markdown, LaTeX and CSV under ``results/``; ``python -m mtad.tables`` also draws the
plots and the HTML report.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from mtad.records import latest_runs, read_lines, write_atomic
from mtad.report import comparable_key

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
    model: str
    decoder: str
    params: str
    runs: list[dict] = field(default_factory=list)
    examples: list[list[dict]] = field(default_factory=list)  # per run: {tokens, seconds, joules, quality}


def _params_key(run: dict) -> str:
    return json.dumps(run["decoder_params"], sort_keys=True)


def _speedup(run: dict, runs: list[dict], reference: str) -> float | None:
    """tokens/s over that of the ``reference`` decoder's run of the same sweep, pair, task, seed, sampling."""
    matches = [r for r in runs
               if r["decoder"] == reference and r["sweep"] and comparable_key(r) == comparable_key(run)]
    return run["tokens_per_second"] / matches[-1]["tokens_per_second"] if matches else None


def collect(results_dir: Path) -> tuple[list[Cell], list[dict]]:
    runs = list(latest_runs(results_dir).values())
    cells: dict[tuple, Cell] = {}
    for run in runs:
        key = (run["task"], run["model"], run["decoder"], _params_key(run),
               json.dumps(run["sampling"], sort_keys=True), run["max_new_tokens"])
        cell = cells.setdefault(key, Cell(run["task"], run["model"], run["decoder"], _params_key(run)))
        cell.runs.append(run)
        samples = read_lines(Path(results_dir) / "samples" / f"{run['run_id']}.jsonl")
        cell.examples.append([{"tokens": len(s["new_tokens"]), "seconds": s["stats"]["wall_seconds"],
                               "joules": s.get("energy_joules"), "quality": example_quality(run["task"], s["verdict"])}
                              for s in samples])
    return list(cells.values()), runs


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
        ratios = [s for s in (_speedup(r, runs, reference) for r in cell.runs) if s is not None]
        ours[f"vs_{reference}"] = sum(ratios) / len(ratios) if ratios else None
    return ours


def load_paper(path: Path) -> dict[tuple, dict]:
    paper: dict[tuple, dict] = {}
    if path.exists():
        for row in csv.DictReader(io.StringIO(path.read_text())):
            paper.setdefault((row["task"], row["model_pair"], row["decoder"]), {})[row["metric"]] = float(row["value"])
    return paper


def build_rows(results_dir: Path, paper_csv: Path) -> list[dict]:
    cells, runs = collect(results_dir)
    paper = load_paper(paper_csv)
    rows = {}
    for cell in cells:
        siblings = [json.loads(c.params) for c in cells
                    if (c.task, c.model, c.decoder) == (cell.task, cell.model, cell.decoder)]
        params = {k: v for k, v in json.loads(cell.params).items() if len({json.dumps(s.get(k)) for s in siblings}) > 1}
        rows[(cell.task, cell.model, cell.decoder, ", ".join(f"{k}={v}" for k, v in params.items()))] = \
            summarize(cell, runs)
    for task, model, decoder in paper:
        if not any(k[:3] == (task, model, decoder) for k in rows):
            rows[(task, model, decoder, "")] = None
    order = lambda k: (k[0], k[1], DECODER_ORDER.index(k[2]) if k[2] in DECODER_ORDER else 99, k[3])  # noqa: E731
    table = []
    for key in sorted(rows, key=order):
        task, model, decoder, params = key
        table.append({"task": task, "model": model, "decoder": decoder, "params": params, "ours": rows[key],
                      "paper": paper.get((task, model, decoder))})
    return table


# -- formats --------------------------------------------------------------------------------------
def _number(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def _with_ci(value, ci, digits=2):
    if value is None:
        return "-"
    return _number(value, digits) + ("" if ci is None else f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]")


def display_rows(table: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["task", "model", "decoder", "params", "seeds", "examples", "tok/s [95% CI]", "vs AR", "vs SpD",
              "J/token [95% CI]", "quality [95% CI]", "quality measure", "paper tok/s", "paper J/token", "paper quality"]
    out = []
    for row in table:
        ours, paper = row["ours"], row["paper"] or {}
        measure = QUALITY.get(row["task"], (None, 1, "-"))[2]
        if ours and ours["database_mode"]:
            measure += f" ({ours['database_mode']} DBs)"
        if ours is None:
            cells = [NOT_RUN] * 8
        else:
            cells = [str(ours["seeds"]), str(ours["examples"]),
                     _with_ci(ours["tokens_per_s"], ours["tokens_per_s_ci"]),
                     "-" if ours["vs_ar"] is None else f"{ours['vs_ar']:.2f}x",
                     "-" if ours["vs_spd"] is None else f"{ours['vs_spd']:.2f}x",
                     _with_ci(ours["joules_per_token"], ours["joules_per_token_ci"], 3) if ours["joules_per_token"]
                     is not None else "no meter",
                     _with_ci(ours["quality"], ours["quality_ci"], 1), measure]
        published = [_number(paper[m], 1) if m in paper else NOT_IN_PAPER
                     for m in ("tokens_per_s", "joules_per_token", "quality")]
        out.append([row["task"], row["model"], row["decoder"], row["params"] or "-", *cells, *published])
    return header, out


def markdown(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def latex(header, rows) -> str:
    escape = lambda s: s.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%").replace("&", "\\&")  # noqa: E731
    lines = ["\\begin{tabular}{" + "l" * 4 + "r" * (len(header) - 4) + "}", "\\toprule",
             " & ".join(escape(h) for h in header) + " \\\\", "\\midrule"]
    lines += [" & ".join(escape(c) for c in row) + " \\\\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_text(table: list[dict]) -> str:
    out = io.StringIO()
    fields = ["task", "model", "decoder", "params", "seeds", "examples", "tokens_per_s", "tokens_per_s_lo",
              "tokens_per_s_hi", "vs_ar", "vs_spd", "joules_per_token", "joules_per_token_lo", "joules_per_token_hi",
              "quality", "quality_lo", "quality_hi", "paper_tokens_per_s", "paper_joules_per_token", "paper_quality"]
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for row in table:
        ours, paper = row["ours"], row["paper"] or {}
        record = {k: row[k] for k in ("task", "model", "decoder", "params")}
        if ours is None:
            record.update({k: NOT_RUN for k in fields[4:17]})
        else:
            record.update(seeds=ours["seeds"], examples=ours["examples"], vs_ar=ours["vs_ar"], vs_spd=ours["vs_spd"])
            for metric in ("tokens_per_s", "joules_per_token", "quality"):
                ci = ours[f"{metric}_ci"] or (None, None)
                record.update({metric: ours[metric], f"{metric}_lo": ci[0], f"{metric}_hi": ci[1]})
        for metric in ("tokens_per_s", "joules_per_token", "quality"):
            record[f"paper_{metric}"] = paper.get(metric, NOT_IN_PAPER)
        if ours is not None and ours["joules_per_token"] is None:
            record.update(joules_per_token="no meter", joules_per_token_lo="no meter", joules_per_token_hi="no meter")
        writer.writerow({k: "-" if v is None or v == "" else v for k, v in record.items()})  # never a blank cell
    return out.getvalue()


def write_tables(results_dir: Path, paper_csv: Path) -> list[dict]:
    table = build_rows(results_dir, paper_csv)
    header, rows = display_rows(table)
    write_atomic(results_dir / "table.md", markdown(header, rows))
    write_atomic(results_dir / "table.tex", latex(header, rows))
    write_atomic(results_dir / "table.csv", csv_text(table))
    return table


def main() -> None:
    from mtad.html_report import write_report
    from mtad.plots import write_plots

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results", help="the results folder (holds runs.jsonl)")
    parser.add_argument("--paper", default=None, help="the paper's numbers (default: <results>/paper_table.csv)")
    args = parser.parse_args()
    results = Path(args.results)
    if not (results / "runs.jsonl").exists():
        raise SystemExit(f"error: no results store at {results / 'runs.jsonl'}; run some jobs first")
    table = write_tables(results, Path(args.paper) if args.paper else results / "paper_table.csv")
    plots = write_plots(results, table)
    report = write_report(results, table, plots)
    print((results / "table.md").read_text())
    print(f"wrote {results / 'table.md'}, table.tex, table.csv, {len(plots)} plots under {results / 'plots'}, {report}")


if __name__ == "__main__":
    main()
