"""The W&B dashboard (mtad/report/dashboard.py) is built offline: the expected panels, every metric it
plots is one that ``logger=wandb`` writes, and every config key it groups by is in the logged
config. Saving needs the network and is not tested here."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mtad.job.wandb_log import GROUP_CONFIG, flat_metrics, run_config

pytest.importorskip("wandb_workspaces", reason="pip install wandb-workspaces (extra: wandb)")
from mtad.report.dashboard import build_report  # noqa: E402

CONF = Path(__file__).resolve().parent.parent / "conf"


def summary(task: str, quality: dict) -> dict:
    """A job summary as the harness writes it (the parts the logger reads)."""
    return {"run_id": "r", "sweep": "multirun/x", "task": task, "pair": "qwen2.5-coder+draft-int8", "decoder": "mtad",
            "seed": 1, "tokens_per_second": 5.0, "block_efficiency": 2.0, "acceptance_rate": 0.5, "energy_joules": 3.0,
            "joules_per_token": 0.1, "idle_watts": 10.0, "examples": 4, "quality": quality, "energy_source": "rapl",
            "totals": {"new_tokens": 30}, "acceptance_per_position": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2],
            "config": {"decoder": OmegaConf.to_container(OmegaConf.load(CONF / "decoder" / "mtad.yaml")),
                       "task": {"name": task}, "seed": 1}}


SUMMARIES = [summary("humaneval", {"pass@1": 0.5}), summary("spider", {"execution_accuracy": 40.0}),
             summary("mtbench", {"answered": 80, "mt_bench_score": 6.1})]


def names(metric) -> str:
    return metric if isinstance(metric, str) else metric.name


def test_dashboard_panels_plot_only_what_the_logger_writes():
    report = build_report("mtad", "some-team")
    grid = report.blocks[-1]
    kinds = [type(p).__name__ for p in grid.panels]
    assert kinds.count("BarPlot") == 4 and kinds.count("ScatterPlot") == 9 and kinds[-1] == "RunComparer"
    titles = " | ".join(p.title or "" for p in grid.panels if hasattr(p, "title"))
    for wanted in ("tokens/s per decoder", "J/token per decoder", "humaneval: speed vs pass@1",
                   "spider: speed vs execution_accuracy", "mtbench: speed vs mt_bench_score",
                   "acceptance per draft position", "MTAD: block_efficiency vs tau", "MTAD: tokens_per_second vs W"):
        assert wanted in titles
    logged = set().union(*(flat_metrics(s) for s in SUMMARIES))
    configs = [run_config(s) for s in SUMMARIES]
    for panel in grid.panels:
        metrics = list(getattr(panel, "metrics", [])) + [getattr(panel, a, None) for a in ("x", "y")]
        for metric in filter(None, metrics):
            if type(metric).__name__ == "Config":  # an MTAD hyper-parameter: in every MTAD run's config
                section, key = metric.name.split(".")
                assert all(key in c[section] for c in configs), metric.name
            else:
                assert names(metric) in logged, f"{names(metric)} is never logged"
        group = getattr(panel, "groupby", None)
        if group is not None:
            assert names(group) in GROUP_CONFIG.values() and all(names(group) in c for c in configs)
    assert all(c[GROUP_CONFIG["decoder"]] == "mtad" and c[GROUP_CONFIG["pair"]] == "qwen2.5-coder+draft-int8"
               for c in configs)
    for panel in grid.panels:  # each converts to W&B's wire model (the runset needs a login: not here)
        panel._to_model()


def test_a_sweep_filter_names_its_group():
    report = build_report("mtad", "some-team", sweep="multirun/2026-11-26/10-00-00/")
    assert report.blocks[-1].runsets[0].filters == "Metric('group') == '10-00-00'"
