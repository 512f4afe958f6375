"""``make table``: the paper-layout table (``rows``), written as Markdown, LaTeX and CSV
(``formats``), with plots (``plots``), paired comparisons (``paired``), the paper's claims against
them (``claims``), an offline HTML report that opens on those claims (``html``) and the W&B
dashboard (``dashboard``), all from the results store; no module here names a task (each run's
record carries its task's metric). Entry point: ``python -m mtad.report``."""
