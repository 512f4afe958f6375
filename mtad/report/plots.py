"""The table's plots (PNG and SVG under ``results/plots/``):
- speed vs quality per task: one point per model pair x decoder, 95% bootstrap error bars;
- MTAD ablations: tokens/s, block efficiency and quality against tau, W and gamma;
- acceptance rate per draft position, per decoder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

ABLATED = {"tau": "tau", "width": "W", "gamma": "gamma"}


def _save(fig, folder: Path, name: str) -> list[Path]:
    paths = [folder / f"{name}.png", folder / f"{name}.svg"]
    # a fixed salt for the SVG's element ids and no date: the same data gives the same bytes, so a
    # rebuild changes a committed plot only when its numbers change
    with plt.rc_context({"svg.hashsalt": name}):
        for path in paths:
            fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(fig)
    return paths


def _error(value, ci):
    if ci is None or value is None:
        return [[0], [0]]
    return [[max(value - ci[0], 0)], [max(ci[1] - value, 0)]]


def speed_vs_quality(table: list[dict], folder: Path) -> list[Path]:
    paths = []
    for task in sorted({row["task"] for row in table if row["metric"]}):
        rows = [r for r in table if r["task"] == task and r["ours"] and r["ours"]["quality"] is not None
                and r["ours"]["tokens_per_s"] is not None]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for row in rows:
            ours = row["ours"]
            ax.errorbar(ours["tokens_per_s"], ours["quality"], xerr=_error(ours["tokens_per_s"], ours["tokens_per_s_ci"]),
                        yerr=_error(ours["quality"], ours["quality_ci"]), fmt="o", capsize=3)
            label = f"{row['decoder']} ({row['pair']})" + (f" {row['params']}" if row["params"] else "")
            ax.annotate(label, (ours["tokens_per_s"], ours["quality"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
        ax.set_xlabel("tokens/s")
        ax.set_ylabel(rows[0]["metric"].title)
        ax.set_title(f"{task}: speed vs quality (95% bootstrap CI)")
        ax.grid(alpha=0.3)
        paths += _save(fig, folder, f"speed_vs_quality_{task}")
    return paths


def mtad_ablations(runs: list[dict], folder: Path) -> list[Path]:
    """For each of tau, W, gamma: the MTAD runs that differ from another MTAD run only in it."""
    mtad = [r for r in runs if r["decoder"] == "mtad" and all(k in r["decoder_params"] for k in ABLATED)]
    paths = []
    for param, label in ABLATED.items():
        def rest(run):
            others = {k: v for k, v in run["decoder_params"].items() if k != param}
            return json.dumps([run["task"], run["pair"], run["seed"], run["sampling"], others], sort_keys=True)

        groups: dict[str, list[dict]] = {}
        for run in mtad:
            groups.setdefault(rest(run), []).append(run)
        series = [sorted(g, key=lambda r: float(r["decoder_params"][param])) for g in groups.values()
                  if len({json.dumps(r["decoder_params"][param]) for r in g}) > 1]
        if not series:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        for group in series:
            xs = [float(r["decoder_params"][param]) for r in group]
            finite = [x if math.isfinite(x) else max(v for v in xs if math.isfinite(v)) * 1.5 for x in xs]
            name = f"{group[0]['task']} {group[0]['pair']}"
            metric = group[-1]["metric"]
            quality = [(r["quality"].get(metric.key) or math.nan) * metric.factor if metric else math.nan
                       for r in group]
            for ax, values in zip(axes, ([r["tokens_per_second"] for r in group],
                                         [r["block_efficiency"] for r in group], quality)):
                ax.plot(finite, values, "o-", label=name)
        for ax, title in zip(axes, ("tokens/s", "block efficiency", "quality")):
            ax.set_xlabel(label + (" (inf drawn at the right end)" if param == "tau" else ""))
            ax.set_title(title)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"MTAD ablation over {label}", y=1.04)
        paths += _save(fig, folder, f"mtad_ablation_{param}")
    return paths


def acceptance_per_position(runs: list[dict], folder: Path) -> list[Path]:
    latest = {}  # one line per decoder, task, pair and parameters: the latest run
    for run in runs:
        if run["acceptance_per_position"]:
            label = f"{run['decoder']} {run['task']} {run['pair']}"
            latest[(label, json.dumps(run["decoder_params"], sort_keys=True))] = run
    if not latest:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    for (label, _), run in latest.items():
        rates = run["acceptance_per_position"]
        ax.plot(range(1, len(rates) + 1), rates, "o-", label=label)
    ax.set_xlabel("draft position")
    ax.set_ylabel("acceptance rate")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    ax.set_title("acceptance per draft position")
    return _save(fig, folder, "acceptance_per_position")


def write_plots(results_dir: Path, table: list[dict], runs: list[dict]) -> list[Path]:
    """``runs``: the current runs (newest code versions) behind ``table``."""
    folder = Path(results_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    return speed_vs_quality(table, folder) + mtad_ablations(runs, folder) + acceptance_per_position(runs, folder)
