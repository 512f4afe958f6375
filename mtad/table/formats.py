"""The table's rows as text: Markdown, LaTeX and CSV under ``results/``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from mtad.records import write_atomic
from mtad.table.rows import NOT_IN_PAPER, NOT_RUN, QUALITY


def _number(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def _with_ci(value, ci, digits=2):
    if value is None:
        return "-"
    return _number(value, digits) + ("" if ci is None else f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]")


def display_rows(table: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["task", "pair", "decoder", "params", "seeds", "examples", "tok/s [95% CI]", "vs AR", "vs SpD",
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
        out.append([row["task"], row["pair"], row["decoder"], row["params"] or "-", *cells, *published])
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
    fields = ["task", "pair", "decoder", "params", "seeds", "examples", "tokens_per_s", "tokens_per_s_lo",
              "tokens_per_s_hi", "vs_ar", "vs_spd", "joules_per_token", "joules_per_token_lo", "joules_per_token_hi",
              "quality", "quality_lo", "quality_hi", "paper_tokens_per_s", "paper_joules_per_token", "paper_quality"]
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for row in table:
        ours, paper = row["ours"], row["paper"] or {}
        record = {k: row[k] for k in ("task", "pair", "decoder", "params")}
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


def write_tables(results_dir: Path, table: list[dict]) -> None:
    header, rows = display_rows(table)
    write_atomic(results_dir / "table.md", markdown(header, rows))
    write_atomic(results_dir / "table.tex", latex(header, rows))
    write_atomic(results_dir / "table.csv", csv_text(table))
