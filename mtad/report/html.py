"""A static HTML report (``results/report/index.html``): the table and the plots, readable
offline (no scripts, no remote assets; the plots are copied beside the page)."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

from mtad.job.records import write_atomic
from mtad.report.formats import display_frame

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px}"
         "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:nth-child(-n+4){text-align:left}"
         "th{background:#eee}.missing{color:#999}img{max-width:100%;margin:1em 0;border:1px solid #ddd}"
         # the paper's three columns apart from ours; the rows we ran stand out from the paper-only ones
         "td:nth-last-child(-n+3),th:nth-last-child(-n+3){background:#eef3fb;font-style:italic}"
         "tr.ours td{font-weight:bold;background:#fffbe6}tr.ours td:nth-last-child(-n+3){background:#eef3fb}")


def write_report(results_dir: Path, table: list[dict], plots: list[Path], note: str = "", newest: str = "") -> Path:
    """``note``: where the columns come from (``formats.sources_note``), shown under the table;
    ``newest``: when the newest record behind it was made (the page carries no build time, so a
    rebuild from the same store writes the same bytes)."""
    folder = Path(results_dir) / "report"
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    shown = display_frame(table)
    header, rows = list(shown.columns), shown.values.tolist()
    cells = lambda row, tag: "".join(  # noqa: E731
        f"<{tag}{' class=missing' if c in ('not run', 'not in paper', '-') else ''}>{html.escape(c)}</{tag}>" for c in row)
    dated = f", records up to {html.escape(newest[:16].replace('T', ' '))} UTC" if newest else ""
    body = [f"<h1>mtad results</h1><p>From <code>{html.escape(str(Path(results_dir) / 'runs.jsonl'))}</code>"
            f"{dated}. tokens/s is a ratio of sums over "
            "examples; intervals are 95% bootstrap intervals over problems (each with all its seeds); speed-ups "
            "compare with AR and SpD runs of the same sweep. Bold rows are ours; the last three columns (blue, "
            "italic) are the paper's published numbers for its Llama-3 pairs, on its hardware: compare within a "
            "column group, not across.</p>",
            "<table><tr>" + cells(header, "th") + "</tr>"]
    body += [("<tr class=ours>" if ran["ours"] else "<tr>") + cells(row, "td") + "</tr>" for ran, row in zip(table, rows)]
    body.append("</table>")
    if note:
        body.append("<pre>" + html.escape(note.strip()) + "</pre>")
    for plot in (p for p in plots if p.suffix == ".png"):
        shutil.copyfile(plot, folder / "plots" / plot.name)
        svg = plot.with_suffix(".svg")
        if svg.exists():
            shutil.copyfile(svg, folder / "plots" / svg.name)
        body.append(f"<h2>{html.escape(plot.stem.replace('_', ' '))}</h2>"
                    f"<a href='plots/{svg.name}'><img src='plots/{plot.name}' alt='{html.escape(plot.stem)}'></a>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>mtad results</title><style>{STYLE}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")
    write_atomic(folder / "index.html", page)
    return folder / "index.html"
