"""The table's plots (PNG and SVG under ``results/plots/``):
- speed vs quality per task: one point per model pair x decoder, 95% bootstrap error bars;
- MTAD ablations: tokens/s, block efficiency and quality against tau, W and gamma;
- acceptance rate per draft position, per decoder, one panel per task.
Each plot has its line in the report (``CAPTIONS``). A decoder has one colour in every plot, and
no two series of one axes look alike (``Styles``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from mtad.job.comparison import params_label, varying_params  # noqa: E402
from mtad.report.rows import DECODER_ORDER  # noqa: E402

ABLATED = {"tau": "tau", "width": "W", "gamma": "gamma"}
COLOURS = plt.get_cmap("tab10").colors
MARKERS = "os^Dv<>pP*"
LINES = ("-", "--", ":", "-.")

# file name prefix -> the report's line under the plot: what it shows, and what to read from it
CAPTIONS = {
    "speed_vs_quality_": "Each point is one decoder on this task: tokens/s from its speed sitting (across) against the "
                         "task's quality (up), bars the 95% bootstrap intervals. Up and to the right is better; points "
                         "whose bars overlap are not told apart here (the paired comparisons above are the sharper "
                         "test).",
    "mtad_ablation_": "MTAD's tokens/s, block efficiency and quality as one setting varies, all else fixed, one line per "
                      "task and pair. Read block efficiency (tokens per target call, the same on any machine) for what "
                      "the setting does to drafting; tokens/s here comes from runs made in separate sessions, so small "
                      "speed differences may be the machine's.",
    "acceptance_per_position": "The share of drafted tokens the target accepted at each draft position, one panel per "
                               "task, one colour per decoder. Read how fast acceptance falls with depth: where it is "
                               "low, drafting further buys little.",
    "agreement_": "Problem by problem, the share of seeds each decoder solved (left, sorted), and the 2 x 2 counts at "
                  "the first seed (right). Read the two off-diagonal counts, the problems only one decoder solved: "
                  "McNemar's test in the comparisons asks whether they differ by more than chance.",
}


def caption(path: Path) -> str:
    """The report's line under the plot at ``path`` (``CAPTIONS``); a plot without one is an error."""
    for prefix, text in CAPTIONS.items():
        if path.stem.startswith(prefix):
            return text
    raise KeyError(f"no caption for the plot {path.name}: add one to mtad/report/plots.py CAPTIONS")


class Styles:
    """The look of each series of one axes: its decoder's colour (the same decoder, the same colour
    in every plot; any other key takes the next colour after the decoders'), and, for a colour the
    axes has met before, the next marker and line style, so no two series look alike (matplotlib's
    own cycle repeats its 10 colours from the 11th series on)."""

    def __init__(self):
        self.keys: list[str] = []
        self.used: dict[tuple, int] = {}

    def __call__(self, key: str) -> dict:
        if key not in DECODER_ORDER and key not in self.keys:
            self.keys.append(key)
        index = DECODER_ORDER.index(key) if key in DECODER_ORDER else len(DECODER_ORDER) + self.keys.index(key)
        colour = COLOURS[index % len(COLOURS)]
        n = self.used.get(colour, 0)
        self.used[colour] = n + 1
        return {"color": colour, "marker": MARKERS[n % len(MARKERS)], "linestyle": LINES[n % len(LINES)]}


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
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        style = Styles()
        pairs = sorted({row["pair"] for row in rows})
        for row in rows:
            ours, look = row["ours"], style(row["decoder"])
            label = row["decoder"] + (f" ({row['pair']})" if len(pairs) > 1 else "") + \
                (f" {row['params']}" if row["params"] else "")
            ax.errorbar(ours["tokens_per_s"], ours["quality"], xerr=_error(ours["tokens_per_s"], ours["tokens_per_s_ci"]),
                        yerr=_error(ours["quality"], ours["quality_ci"]), capsize=3, color=look["color"], fmt="none")
            ax.plot(ours["tokens_per_s"], ours["quality"], color=look["color"], marker=look["marker"], linestyle="none",
                    markersize=7, label=label)  # the legend shows the marker alone
        ax.set_xlabel("tokens/s")
        ax.set_ylabel(rows[0]["metric"].title)
        ax.set_title(f"{task}{f', {pairs[0]}' if len(pairs) == 1 else ''}: speed vs quality (95% bootstrap CI)",
                     fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
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
        style = Styles()
        for group in series:
            xs = [float(r["decoder_params"][param]) for r in group]
            finite = [x if math.isfinite(x) else max(v for v in xs if math.isfinite(v)) * 1.5 for x in xs]
            name = f"{group[0]['task']} {group[0]['pair']}"
            metric = group[-1]["metric"]
            quality = [(r["quality"].get(metric.key) or math.nan) * metric.factor if metric else math.nan
                       for r in group]
            look = style(name)
            for ax, values in zip(axes, ([r["tokens_per_second"] for r in group],
                                         [r["block_efficiency"] for r in group], quality)):
                ax.plot(finite, values, label=name, **look)
        for ax, title in zip(axes, ("tokens/s", "block efficiency", "quality")):
            ax.set_xlabel(label + (" (inf drawn at the right end)" if param == "tau" else ""))
            ax.set_title(title)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"MTAD ablation over {label}", y=1.04)
        paths += _save(fig, folder, f"mtad_ablation_{param}")
    return paths


def acceptance_per_position(runs: list[dict], folder: Path) -> list[Path]:
    """One panel per task, one line per decoder, pair and parameters there (the latest run)."""
    latest = {}
    for run in runs:
        if run["acceptance_per_position"]:
            latest[(run["task"], run["pair"], run["decoder"], json.dumps(run["decoder_params"], sort_keys=True))] = run
    if not latest:
        return []
    tasks = sorted({key[0] for key in latest})
    fig, axes = plt.subplots(1, len(tasks), figsize=(max(6.0, 4.4 * len(tasks)), 4), sharey=True, squeeze=False)
    order = lambda key: (DECODER_ORDER.index(key[2]) if key[2] in DECODER_ORDER else 99, key[1], key[3])  # noqa: E731
    for ax, task in zip(axes[0], tasks):
        keys = sorted((key for key in latest if key[0] == task), key=order)
        shown = varying_params([{"task": task, "pair": "", "decoder": k[2], "decoder_params": json.loads(k[3])}
                                for k in keys])
        pairs = len({key[1] for key in keys}) > 1
        style = Styles()
        for key, params in zip(keys, shown):
            rates = latest[key]["acceptance_per_position"]
            label = " ".join([key[2]] + [key[1]] * pairs + [params_label(params)] * bool(params))
            ax.plot(range(1, len(rates) + 1), rates, label=label, **style(key[2]))
        ax.set_title(task + ("" if pairs else f" ({keys[0][1]})"), fontsize=9)
        ax.set_xlabel("draft position")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("acceptance rate")
    fig.suptitle("acceptance per draft position", y=1.02)
    return _save(fig, folder, "acceptance_per_position")


def write_plots(results_dir: Path, table: list[dict], runs: list[dict]) -> list[Path]:
    """``runs``: the current runs (newest code versions) behind ``table``."""
    folder = Path(results_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    return speed_vs_quality(table, folder) + mtad_ablations(runs, folder) + acceptance_per_position(runs, folder)
