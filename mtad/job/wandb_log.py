"""Mirror a finished job to Weights & Biases (``logger=wandb``): one W&B run per job with the
resolved config, the summary's metrics and a table of the samples, grouped by sweep.

Offline unless an API key is set (``WANDB_API_KEY``) or ``logger.mode=online``: the run is then
written under ``<job>/wandb/`` and uploaded later with ``wandb sync <job>/wandb/offline-run-*``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from mtad.errors import UserError
from mtad.ranges import OneOf, check_ranges, ranged

MODES = ("auto", "online", "offline")


@dataclass(frozen=True)
class WandbSettings:
    """conf/logger/wandb.yaml's keys besides its name, checked when the job's config is built."""

    project: str = "mtad"
    entity: str | None = None  # W&B team or user; None: the key's default
    # auto: online when WANDB_API_KEY is set, else offline
    mode: str = ranged("auto", OneOf(MODES))

    def __post_init__(self):
        check_ranges(self, "logger")


SETTINGS = tuple(f.name for f in dataclasses.fields(WandbSettings))
# Flat config keys every logged run carries, so dashboards (mtad/report/dashboard.py) can group by them
# (the resolved config nests them: decoder.name, task.name; pair.name lacks the quantization).
GROUP_CONFIG = {"decoder": "mtad_decoder", "task": "mtad_task", "pair": "mtad_pair"}
POSITIONS_SHOWN = 8  # acceptance_per_position/1..8 in dashboards (runs log every position they have)


def sweep_group(sweep: str) -> str:
    """The W&B group of a sweep's runs: its folder's name (``multirun/<date>/<time>`` -> ``<time>``)."""
    return Path(sweep).name


def run_config(summary: dict) -> dict:
    """The W&B run config: the resolved config plus the flat ``GROUP_CONFIG`` keys."""
    return {**summary["config"], **{key: summary[field] for field, key in GROUP_CONFIG.items()}}


def flat_metrics(summary: dict) -> dict:
    """The summary's numbers, nested keys joined by '/' (quality/pass@1, totals/new_tokens ...)."""
    out = {}
    for key in ("tokens_per_second", "block_efficiency", "acceptance_rate", "energy_joules", "joules_per_token",
                "idle_watts", "examples"):
        if summary.get(key) is not None:
            out[key] = summary[key]
    for group in ("quality", "totals"):
        for key, value in summary.get(group, {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{group}/{key}"] = value
    for position, rate in enumerate(summary.get("acceptance_per_position", []), start=1):
        out[f"acceptance_per_position/{position}"] = rate
    out["energy_source"] = summary.get("energy_source")
    return out


def log_job(summary: dict, samples: list[dict], out_dir: Path, settings: dict) -> str:
    """Log one job; returns the W&B mode used."""
    mode = WandbSettings(**{key: settings[key] for key in SETTINGS if key in settings}).mode
    if mode == "auto":
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    try:
        import wandb
    except ImportError:
        raise UserError("logger=wandb needs the wandb package (pip install wandb)") from None
    run = wandb.init(project=settings.get("project") or "mtad", entity=settings.get("entity"), mode=mode,
                     dir=str(out_dir),
                     group=sweep_group(summary["sweep"]) if summary.get("sweep") else summary["run_id"],
                     name=f"{summary['pair']}/{summary['task']}/{summary['decoder']}/seed{summary['seed']}",
                     job_type=summary["task"], config=run_config(summary), tags=[summary["decoder"], summary["pair"]])
    try:
        run.summary.update({**flat_metrics(summary), "run_id": summary["run_id"]})
        table = wandb.Table(columns=["id", "new_tokens", "stop_reason", "energy_joules", "verdict"])
        for sample in samples:
            table.add_data(sample["id"], len(sample["new_tokens"]), sample["stop_reason"], sample.get("energy_joules"),
                           json.dumps(sample["verdict"], default=str))
        run.log({"samples": table})
    finally:
        run.finish()
    return mode
