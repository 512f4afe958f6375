"""The table's rows as text: Markdown, LaTeX and CSV under ``results/``, written by pandas."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mtad.job.records import write_atomic
from mtad.report.rows import NOT_IN_PAPER, NOT_RUN, full_run

METRICS = ("tokens_per_s", "joules_per_token", "quality")
HEADER = ["task", "pair", "decoder", "params", "seeds", "examples", "tok/s [95% CI]", "vs AR", "vs SpD",
          "block eff.", "J/token [95% CI]", "quality [95% CI]", "quality measure", "paper tok/s", "paper J/token", "paper quality"]


def _with_ci(value, ci, digits=2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" + ("" if ci is None else f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]")


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


MIXED = "†"  # beside the seeds of a cell whose runs come from more than one machine


def mixed(ours: dict) -> bool:
    """Whether a cell's full runs were generated on more than one machine (other numerics)."""
    return len(ours.get("machines") or []) > 1


def display_frame(table: list[dict]) -> pd.DataFrame:
    """The table as a reader sees it: one string per cell, never blank."""
    rows = []
    for row in table:
        ours, paper = row["ours"], row["paper"] or {}
        metric = row["metric"]
        measure = metric.title if metric else "-"
        if ours is None:
            cells = [NOT_RUN] * 9
        else:
            for key, form in metric.labels if metric else ():
                if ours["labels"].get(key):
                    measure += f" ({form.format(ours['labels'][key])})"
            energy = "no meter" if ours["joules_per_token"] is None else \
                _with_ci(ours["joules_per_token"], ours["joules_per_token_ci"], 3)
            full = full_run(ours)
            seeds = str(ours["seeds"]) + (f" {MIXED}" if mixed(ours) else "")
            cells = [seeds if full else NOT_RUN, str(ours["examples"]) if full else NOT_RUN,
                     _with_ci(ours["tokens_per_s"], ours["tokens_per_s_ci"]), _ratio(ours["vs_ar"]), _ratio(ours["vs_spd"]),
                     "-" if ours["block_efficiency"] is None else f"{ours['block_efficiency']:.2f}", energy,
                     _with_ci(ours["quality"], ours["quality_ci"], 1) if full else NOT_RUN, measure]
        published = [f"{paper[m]:.1f}" if m in paper else NOT_IN_PAPER for m in METRICS]
        rows.append([row["task"], row["pair"], row["decoder"], row["params"] or "-", *cells, *published])
    return pd.DataFrame(rows, columns=HEADER)


def data_frame(table: list[dict]) -> pd.DataFrame:
    """The table for programs (``table.csv``): numbers and interval ends in their own columns;
    markers (not run, no meter, not in paper, -) instead of blanks."""
    records = []
    for row in table:
        ours = row["ours"]
        record = {k: row[k] or "-" for k in ("task", "pair", "decoder", "params")}
        if ours is None:
            record.update(seeds=NOT_RUN, examples=NOT_RUN, vs_ar=NOT_RUN, vs_spd=NOT_RUN, block_efficiency=NOT_RUN,
                          machines=NOT_RUN)
        else:
            full = full_run(ours)
            record.update(seeds=ours["seeds"] if full else NOT_RUN, examples=ours["examples"] if full else NOT_RUN,
                          vs_ar=ours["vs_ar"], vs_spd=ours["vs_spd"], block_efficiency=ours["block_efficiency"],
                          machines=" + ".join(ours["machines"]) if full else NOT_RUN)
        for metric in METRICS:
            ran = ours and (metric != "quality" or full_run(ours))
            lo, hi = (ours[f"{metric}_ci"] or (None, None)) if ran else (NOT_RUN, NOT_RUN)
            value = ours[metric] if ran else NOT_RUN
            if ours and metric == "joules_per_token" and value is None:
                value = lo = hi = "no meter"
            record.update({metric: value, f"{metric}_lo": lo, f"{metric}_hi": hi})
        records.append(record)
    frame = pd.DataFrame(records)
    for metric in METRICS:
        frame[f"paper_{metric}"] = [(row["paper"] or {}).get(metric, NOT_IN_PAPER) for row in table]
    return frame.astype(object).where(frame.notna(), "-")


CAPPED_NOTE_ABOVE = 0.10  # a task's share of answers cut at max_new_tokens worth a line under the table


def capped_note(runs: list[dict]) -> list[str]:
    """One line per task whose runs (summaries) cut more than ``CAPPED_NOTE_ABOVE`` of their
    examples at ``max_new_tokens`` (``hit_max_new_tokens``; runs without the count are left out)."""
    tasks: dict[str, list[dict]] = {}
    for run in runs:
        if run.get("hit_max_new_tokens"):
            tasks.setdefault(run["task"], []).append(run)
    lines = []
    for task, group in sorted(tasks.items()):
        n = {k: sum(r["hit_max_new_tokens"][k] for r in group) for k in group[0]["hit_max_new_tokens"]}
        if not n["of_examples"] or n["examples"] / n["of_examples"] <= CAPPED_NOTE_ABOVE:
            continue
        caps = "/".join(map(str, sorted({r["max_new_tokens"] for r in group})))
        line = (f"Cut at max_new_tokens ({caps}): {task}, {n['examples'] / n['of_examples']:.0%} of examples "
                f"({n['examples']}/{n['of_examples']} over {len(group)} run{'s' * (len(group) > 1)})")
        if n["of_generations"] != n["of_examples"]:
            line += (f" in at least one turn, {n['generations'] / n['of_generations']:.0%} of turns "
                     f"({n['generations']}/{n['of_generations']})")
        lines.append(line + "; those answers are scored as cut.")
    return lines


def sources_note(sources: list[dict] | None, table: list[dict] = (), runs: list[dict] = ()) -> str:
    """Where each column group comes from, under the Markdown table, the notes of the metrics
    of ``table`` (its rows), and the tasks whose ``runs`` cut many answers at max_new_tokens."""
    lines = ["", "Columns: seeds, examples, block eff. and quality come from the full runs (95% bootstrap "
             "intervals over problems, each drawn with all its seeds), block eff. from the speed sweep where no "
             "full run exists yet (quality `not run`); the paper's columns are its Llama-3 pairs on its hardware."]
    if sources is None:
        lines.append("tok/s, vs AR, vs SpD and J/token: the same runs; speed-ups only between runs of one sweep.")
    else:
        lines.append("tok/s, vs AR, vs SpD and J/token come from these interleaved sweeps, one sitting each, never "
                     "from the full runs (`-`: not measured in one):")
        lines += [f"- `{s['sweep']}`: {', '.join(s['tasks'])}, {s['decoders']} decoders x "
                  f"{'/'.join(map(str, s['examples']))} examples, {s['machine']}, {s['dates']}" for s in sources]
    mixing = {tuple(row["ours"]["machines"]) for row in table if row["ours"] and mixed(row["ours"])}
    if mixing:
        lines.append(f"{MIXED} the cell's runs were generated on more than one machine, whose numerics differ, so "
                     "its seeds are not repeats of one experiment: " + "; ".join(" + ".join(m) for m in sorted(mixing))
                     + " (runs recorded before machine fingerprints name only the machine that finished them).")
    for metric in dict.fromkeys(row["metric"] for row in table if row["metric"] and row["metric"].note):
        shown = [row["ours"]["labels"] for row in table if row["metric"] == metric and row["ours"]]
        values = {key: ", ".join(sorted({labels[key] for labels in shown if labels.get(key)}))
                  for key, _ in metric.labels}
        if all(values.values()):  # a legend about its labels only once some row has them
            lines.append(metric.note.format(**values))
    lines += capped_note(runs)
    return "\n".join(lines) + "\n"


def write_tables(results_dir: Path, table: list[dict], sources: list[dict] | None = None,
                 runs: list[dict] = ()) -> None:
    """``sources``: the speed sweeps the speed columns come from (None: from the runs themselves);
    ``runs``: the full runs behind the table (for the note on answers cut at max_new_tokens)."""
    shown = display_frame(table)
    write_atomic(results_dir / "table.md", shown.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)
                 + "\n" + sources_note(sources, table, runs))
    write_atomic(results_dir / "table.tex", shown.to_latex(index=False, escape=True))
    write_atomic(results_dir / "table.csv", data_frame(table).to_csv(index=False))
