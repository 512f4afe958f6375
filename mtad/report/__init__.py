"""``make table``: the paper-layout table (``rows``), written as Markdown, LaTeX and CSV
(``formats``), with plots (``plots``) and an offline HTML report (``report``), all from the
results store. Entry point: ``python -m mtad.report``."""
