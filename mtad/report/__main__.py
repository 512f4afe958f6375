"""``python -m mtad.report [--results results] [--paper FILE]`` (what ``make table`` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtad.errors import one_line_errors
from mtad.report.formats import sources_note, write_tables
from mtad.report.paired import agreement_plots, comparisons, write_comparisons
from mtad.report.plots import write_plots
from mtad.report.html import write_report
from mtad.report.rows import build_rows, collect, load_paper, metrics_of


def main() -> None:
    parser = argparse.ArgumentParser(description="The paper-layout table, plots and HTML report from the results store.")
    parser.add_argument("--results", default="results", help="the results folder (holds runs.jsonl)")
    parser.add_argument("--paper", default=None, help="the paper's numbers (default: <results>/paper_table.csv)")
    parser.add_argument("--speed", default=None, help="a store of interleaved speed sweeps whose numbers replace the "
                        "runs' own speeds (default: <results>/speed when it holds runs.jsonl)")
    args = parser.parse_args()
    results = Path(args.results)
    if not (results / "runs.jsonl").exists():
        raise SystemExit(f"error: no results store at {results / 'runs.jsonl'}; run some jobs first")
    speed = Path(args.speed) if args.speed else results / "speed"
    if args.speed and not (speed / "runs.jsonl").exists():
        raise SystemExit(f"error: no speed store at {speed / 'runs.jsonl'}")
    with one_line_errors():  # e.g. a store written before tasks declared their metric
        speed = collect(speed) if (speed / "runs.jsonl").exists() else None
        store = collect(results)
    paper_csv = Path(args.paper) if args.paper else results / "paper_table.csv"
    table = build_rows(store, paper_csv, speed)
    sources = table.speed_sources if speed else None
    write_tables(results, table.rows, sources, table.runs)
    plots = write_plots(results, table.rows, table.runs) + agreement_plots(store, results / "plots")
    paired, paper = comparisons(store, speed), load_paper(paper_csv)
    written = write_comparisons(results, paired, metrics_of(store, speed), paper)
    report = write_report(results, table.rows, plots, sources_note(sources, table.rows, table.runs),
                          max(s.newest() for s in (store, speed) if s), paired, paper,
                          list(dict.fromkeys(s["machine"] for s in sources or [])))
    print((results / "table.md").read_text())
    if table.ignored:
        print(f"left out {table.ignored} run(s) made by older versions of the code (a cell shows only its newest version)")
    print(f"wrote {results / 'table.md'}, table.tex, table.csv, {written}, {len(plots)} plots under "
          f"{results / 'plots'}, {report}")


if __name__ == "__main__":
    main()
