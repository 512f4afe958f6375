"""A static HTML report (``results/report/index.html``), readable offline (no scripts, no remote
assets; the plots are copied beside the page), that answers first: the paper's claims against our
measurements (``claims``), then the paired comparisons of ``comparisons.md``, the plots, each with
its line of what to read from it, and last the full table, our rows first, the paper-only rows
folded per task. It fits a 1400 px window; a rebuild from the same store writes the same bytes."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

from mtad.job.records import write_atomic
from mtad.report.claims import claim_rows, paper_pairs, RULE, SUBJECT
from mtad.report.formats import display_frame
from mtad.report.paired import COLUMNS, beside_rows, by_task, cells, legend
from mtad.report.plots import caption

STYLE = ("body{font-family:sans-serif;font-size:14px;margin:12px 24px;line-height:1.35}"
         "h1{font-size:22px;margin:.2em 0}h2{font-size:18px;margin:1.2em 0 .3em}h3{font-size:15px;margin:1em 0 .3em}"
         "p{margin:.3em 0;max-width:1300px}table{border-collapse:collapse;font-size:12px;margin:.4em 0}"
         "td,th{border:1px solid #ccc;padding:2px 5px;text-align:right;vertical-align:top}"
         "th{background:#eee;text-align:left;font-weight:600}td.l{text-align:left}.missing{color:#999}"
         ".paper{background:#eef3fb;font-style:italic}.rule{font-size:13px;color:#333}"
         ".holds{background:#d9f0d3;font-weight:bold}.contradicted{background:#f6d5d5;font-weight:bold}"
         ".cannot-tell{background:#f4f4f4}.not-measured-here{color:#888}"
         "figure{margin:1em 0}figcaption{font-size:13px;max-width:1300px}"
         "img{max-width:100%;border:1px solid #ddd}details{margin:.3em 0 1em}summary{cursor:pointer}"
         ".note{white-space:pre-wrap;font-size:12px;color:#333}")
WORDS = ("pair", "decoder", "params", "quality measure")  # the full table's columns of words, left-aligned
MISSING = ("not run", "not in paper", "-", "no meter", "no speed sitting", "not rated")


def _cell(text: str, tag: str = "td", classes: list[str] = (), span: int = 1) -> str:
    names = [*classes, *(["missing"] if text in MISSING else [])]
    attributes = (f" class='{' '.join(names)}'" if names else "") + (f" rowspan={span}" if span > 1 else "")
    return f"<{tag}{attributes}>{html.escape(text)}</{tag}>"


def table(header: list[str], lines: list[list[str]], left: tuple[int, ...] = (0,), paper: tuple[int, ...] = ()) -> str:
    """A table: the columns in ``left`` left-aligned (names, words), those in ``paper`` shaded (the paper's)."""
    style = lambda i: (["l"] if i in left else []) + (["paper"] if i in paper else [])  # noqa: E731
    rows = ["<tr>" + "".join(_cell(h, "th", ["paper"] if i in paper else []) for i, h in enumerate(header)) + "</tr>"]
    rows += ["<tr>" + "".join(_cell(c, classes=style(i)) for i, c in enumerate(line)) + "</tr>" for line in lines]
    return "<table>" + "".join(rows) + "</table>"


def inline(text: str) -> str:
    """Escaped text, Markdown's `code` as <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def claims_table(rows: list[dict], paper: dict[tuple, dict], several: bool) -> str:
    """``claims.claim_rows`` as a table, a claim's lines under one cell (``several``: our pairs are
    more than one, so each line names its pair)."""
    header = ["the paper's claim", "task", SUBJECT, f"paper ({' / '.join(paper_pairs(paper)) or '-'})",
              "ours [95% CI]", "Holm p", "paper's value vs our CI", "verdict"]
    lines = []
    for i, row in enumerate(rows):
        first = i == 0 or rows[i - 1]["claim"] != row["claim"]
        span = sum(1 for r in rows if r["claim"] == row["claim"])
        task = row["task"] + (f", {row['pair']}" if several and row["pair"] != "-" else "")
        lines.append("<tr>" + (_cell(row["claim"], classes=["l"], span=span) if first else "")
                     + _cell(task, classes=["l"]) + _cell(row["subject"], classes=["l"])
                     + _cell(row["paper"], classes=["paper"]) + _cell(row["ours"]) + _cell(row["p_holm"])
                     + _cell(row["paper_in_ours"], classes=["l"])
                     + _cell(row["verdict"], classes=["l", row["verdict"].replace(" ", "-")]) + "</tr>")
    return "<table><tr>" + "".join(_cell(h, "th") for h in header) + "</tr>" + "".join(lines) + "</table>"


def claims_section(comparisons: list[dict], paper: dict[tuple, dict], metrics: dict, machines: list[str]) -> str:
    ours = sorted({r["pair"] for r in comparisons})
    where = f" (speed: {'; '.join(machines)})" if machines else ""
    no_ar = "" if any(decoder == "ar" for _, _, decoder in paper) else ", with no AR row"
    return ("<section id=claims><h2>The paper's claims against our measurements</h2>"
            f"<p>The paper measured its pairs ({html.escape(', '.join(paper_pairs(paper)) or '-')}) on its "
            f"hardware{no_ar}; "
            f"we measured {html.escape(', '.join(ours) or 'nothing yet')}{html.escape(where)}. A tokens/s, J/token or "
            "score does not carry from one pair or machine to another, so the paper's numbers and ours meet here only "
            "as ratios (MTAD / SpD) and differences (MTAD - SpD, MTAD - AR), each taken within its own pair and "
            "machine. Holm p: adjusted over every quality comparison below; speed and energy verdicts rest on the "
            "interval alone.</p>"
            f"<p class=rule>{html.escape(RULE)}</p>"
            + claims_table(claim_rows(comparisons, paper, metrics), paper, len(ours) > 1) + "</section>")


def comparisons_section(comparisons: list[dict], paper: dict[tuple, dict], metrics: dict) -> str:
    if not comparisons:
        return ("<section id=comparisons><h2>Paired comparisons</h2><p>No two decoders ran the same problems yet.</p>"
                "</section>")
    body = ["<section id=comparisons><h2>Paired comparisons</h2>"]
    body += [f"<p>{inline(text)}</p>" for text in legend(comparisons, metrics)]
    beside = {key: (header, lines) for key, header, lines in beside_rows(comparisons, paper)}
    for (task, pair), group in by_task(comparisons):
        header, lines = beside[(task, pair)]
        body += [f"<h3>{html.escape(task)}, {html.escape(pair)}</h3>",
                 table(COLUMNS, [cells(row, metrics[task].paired_digits) for row in group], left=(0, 1)),
                 f"<p>{html.escape(task)}: every decoder against AR and SpD, beside the paper's decoders against "
                 "its SpD (shaded):</p>", table(header, lines, paper=tuple(range(5, len(header))))]
    return "".join(body) + "</section>"


def plots_section(plots: list[Path], folder: Path) -> str:
    body = ["<section id=plots><h2>Plots</h2>"]
    for plot in (p for p in plots if p.suffix == ".png"):
        shutil.copyfile(plot, folder / "plots" / plot.name)
        svg = plot.with_suffix(".svg")
        if svg.exists():
            shutil.copyfile(svg, folder / "plots" / svg.name)
        body.append(f"<figure><h3>{html.escape(plot.stem.replace('_', ' '))}</h3>"
                    f"<a href='plots/{svg.name}'><img src='plots/{plot.name}' alt='{html.escape(plot.stem)}'></a>"
                    f"<figcaption>{html.escape(caption(plot))}</figcaption></figure>")
    return "".join(body) + "</section>"


def table_section(rows: list[dict], note: str) -> str:
    """Per task: our rows, then the paper's rows folded; the paper's columns beside ours only
    where one of our rows has the paper's numbers (a pair the paper ran)."""
    shown = display_frame(rows)
    header = list(shown.columns)
    paper_columns = [i for i, name in enumerate(header) if name.startswith("paper ")]
    body = ["<section id=table><h2>Full table</h2><p>Per task, our rows (tokens/s a ratio of sums over examples; "
            "intervals 95% bootstrap over problems, each with all its seeds; speed-ups against AR and SpD of the same "
            "sitting), then, folded, the rows only the paper has: its published numbers on its pairs and hardware, "
            "to be compared with ours as ratios, not as numbers.</p>"]
    for task in dict.fromkeys(row["task"] for row in rows):
        ours = [line[1:] for row, line in zip(rows, shown.values.tolist()) if row["task"] == task and row["ours"]]
        theirs = [[line[i] for i in (1, 2, *paper_columns)]
                  for row, line in zip(rows, shown.values.tolist()) if row["task"] == task and not row["ours"]]
        keep = list(range(len(header) - 1))
        if not any(line[i - 1] != "not in paper" for line in ours for i in paper_columns):
            keep = [i for i in keep if i + 1 not in paper_columns]  # the paper did not run our pairs
        pairs = sorted({line[0] for line in ours})
        if len(pairs) == 1:  # one pair: named once, in the heading
            keep = keep[1:]
        body.append(f"<h3>{html.escape(task)}{html.escape(f', {pairs[0]}') if len(pairs) == 1 else ''}</h3>")
        if ours:
            names = [header[i + 1] for i in keep]
            body.append(table(names, [[line[i] for i in keep] for line in ours],
                              left=tuple(j for j, name in enumerate(names) if name in WORDS),
                              paper=tuple(j for j, i in enumerate(keep) if i + 1 in paper_columns)))
        if theirs:
            body += [f"<details><summary>the paper's {len(theirs)} rows for {html.escape(task)} (its pairs, its "
                     "hardware; not run here)</summary>",
                     table([header[i] for i in (1, 2, *paper_columns)], theirs, left=(0, 1),
                           paper=tuple(range(2, 2 + len(paper_columns)))), "</details>"]
    if note:
        body.append(f"<div class=note>{inline(note.strip())}</div>")
    return "".join(body) + "</section>"


def write_report(results_dir: Path, rows: list[dict], plots: list[Path], note: str = "", newest: str = "",
                 comparisons: list[dict] = (), paper: dict[tuple, dict] | None = None,
                 machines: list[str] = ()) -> Path:
    """``rows``: the table's (``build_rows``); ``note``: where the columns come from
    (``formats.sources_note``), under the table; ``newest``: when the newest record behind it was
    made (the page carries no build time, so a rebuild from the same store writes the same bytes);
    ``comparisons``: ``paired.comparisons``; ``paper``: ``rows.load_paper``; ``machines``: where
    the speed was measured."""
    folder = Path(results_dir) / "report"
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    paper = paper or {}
    metrics = {row["task"]: row["metric"] for row in rows}
    dated = f", records up to {html.escape(newest[:16].replace('T', ' '))} UTC" if newest else ""
    body = ["<h1>mtad: the paper's claims, measured</h1>"
            f"<p>From <code>{html.escape(str(Path(results_dir) / 'runs.jsonl'))}</code>{dated}. "
            "<a href='#claims'>Claims</a> &middot; <a href='#comparisons'>paired comparisons</a> &middot; "
            "<a href='#plots'>plots</a> &middot; <a href='#table'>full table</a>.</p>",
            claims_section(list(comparisons), paper, metrics, list(machines)),
            comparisons_section(list(comparisons), paper, metrics),
            plots_section(plots, folder),
            table_section(rows, note)]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>mtad results</title><style>{STYLE}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")
    write_atomic(folder / "index.html", page)
    return folder / "index.html"
