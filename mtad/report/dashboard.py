"""A W&B comparison dashboard for the runs that ``logger=wandb`` logged to a project:

    python -m mtad.report.dashboard --project mtad --entity my-team [--sweep multirun/2026-11-26/10-00-00] [--dry-run]

It saves a W&B report, built with W&B's own library (``wandb-workspaces``), holding what a reader
of the paper compares: tokens/s and J/token per decoder (bars: mean over seeds, min-max range),
speed vs quality per task (one point per run), acceptance per draft position per decoder, block
efficiency and tokens/s against MTAD's tau, W and gamma, and a table of the runs keyed by decoder,
task and pair. ``--sweep`` keeps the runs of one sweep (the W&B group ``log_job`` gives them).
Saving needs the network and a W&B API key; ``--dry-run`` prints the panels and saves nothing.
"""

from __future__ import annotations

import argparse

from mtad.errors import UserError, one_line_errors
from mtad.job.wandb_log import GROUP_CONFIG, POSITIONS_SHOWN, sweep_group
from tasks.catalogue import TASKS

MTAD_ABLATED = {"tau": "tau", "width": "W", "gamma": "gamma"}


def _wr():
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        raise UserError("the dashboard needs wandb-workspaces (pip install 'mtad[wandb]')") from None
    return wr


def panels() -> list:
    """The dashboard's panels (W&B panel objects), in reading order."""
    wr = _wr()
    by_decoder = dict(groupby=wr.Config(GROUP_CONFIG["decoder"]), groupby_aggfunc="mean", groupby_rangefunc="minmax")
    out = [
        wr.BarPlot(title="tokens/s per decoder (mean over seeds, min-max)", metrics=["tokens_per_second"],
                   orientation="v", **by_decoder),
        wr.BarPlot(title="J/token per decoder (mean over seeds, min-max)", metrics=["joules_per_token"],
                   orientation="v", **by_decoder),
        wr.BarPlot(title="block efficiency per decoder", metrics=["block_efficiency"], orientation="v", **by_decoder),
    ]
    # one per task that declares a quality metric (the task catalogue's: W&B runs carry no records)
    out += [wr.ScatterPlot(title=f"{name}: speed vs {task.metric.key}", x="tokens_per_second",
                           y=f"quality/{task.metric.key}")
            for name, task in TASKS.items() if task.metric is not None]
    out.append(wr.BarPlot(title="acceptance per draft position", orientation="v",
                          metrics=[f"acceptance_per_position/{p}" for p in range(1, POSITIONS_SHOWN + 1)],
                          **by_decoder))
    for param, label in MTAD_ABLATED.items():
        for metric in ("block_efficiency", "tokens_per_second"):
            out.append(wr.ScatterPlot(title=f"MTAD: {metric} vs {label}", x=wr.Config(f"decoder.{param}"), y=metric))
    out.append(wr.RunComparer(diff_only="split"))
    return out


def build_report(project: str, entity: str, sweep: str | None = None):
    """The report (not saved)."""
    wr = _wr()
    where = {"filters": f"Metric('group') == '{sweep_group(sweep)}'"} if sweep else {}
    runset = wr.Runset(entity=entity, project=project, name="mtad runs", **where,
                       groupby=[f"config.{GROUP_CONFIG[k]}" for k in ("task", "pair", "decoder")])
    return wr.Report(
        entity=entity, project=project, title="mtad: draft-and-verify decoders compared",
        description="tokens/s, J/token, quality and acceptance per decoder, from mtad's logger=wandb runs",
        width="fluid",
        blocks=[wr.H1("Decoders compared"),
                wr.P("Speed is comparable only within one sweep on one machine: filter by group (sweep). "
                     "Quality intervals and paired tests are in mtad's own `make table`."),
                wr.PanelGrid(runsets=[runset], panels=panels())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", required=True)
    parser.add_argument("--entity", required=True, help="W&B team or user owning the project")
    parser.add_argument("--sweep", default=None, help="a sweep folder or its W&B group name")
    parser.add_argument("--dry-run", action="store_true", help="print the panels, save nothing")
    args = parser.parse_args()
    with one_line_errors():
        report = build_report(args.project, args.entity, args.sweep)
        for panel in report.blocks[-1].panels:
            print(f"{type(panel).__name__}: {getattr(panel, 'title', '') or ''}")
        if args.dry_run:
            return
        try:
            report.save()
        except Exception as err:  # network, key or permission: one line, nothing half-saved on our side
            raise UserError(f"the report could not be saved to W&B ({type(err).__name__}: {err}); "
                            "set WANDB_API_KEY and check the network") from None
        print(f"saved: {report.url}")


if __name__ == "__main__":
    main()
