"""Paired comparisons of decoders on the same examples (``results/comparisons.md``, written by
``make table``), and the plot of who solves what.

Two decoders of one task and pair (same sampling, same ``max_new_tokens``) ran the same problems,
so their difference is measured problem by problem, which is far tighter than two independent
intervals. For each comparison A vs B:
- quality (the task's declared metric, ``tasks.base.Metric``, once its examples are rated): A - B
  in points, with a 95% paired bootstrap interval: problems resampled, and within each problem
  each decoder's seeds resampled; and one p-value: McNemar's exact test on the discordant
  problems of the first seed both ran for the solved-or-not metrics, else a permutation test over
  problems (``permutation_p``). Each problem is compared on the units of its scores (e.g. turns)
  that both sides rated (``rated_units``). The p-values are Holm-adjusted over the family of every
  quality comparison the file reports (``holm``);
- target perplexity (the target's mean log-probability of what was emitted): A - B, same bootstrap;
- block efficiency (tokens per target call; independent of the machine): A / B, same bootstrap;
- tokens/s and J/token: A / B from the interleaved speed sweep (one sitting), bootstrap over its
  examples; absent when no sweep measured both.
A speed verdict says whether the interval is above 1, below, or straddles it. A quality verdict
is 'higher' or 'lower' only when the Holm-adjusted p is below ``ALPHA`` and the interval excludes
0 on that side (``quality_verdict``), else 'cannot tell'.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mtad.job.comparison import params_label
from mtad.job.records import write_atomic
from mtad.report.rows import CELL, DECODER_ORDER, Store, metrics_of
from tasks.base import Metric

SAMPLES = 2000
PERMUTATIONS = 10000  # a permutation p is at least 1 / 10001: Holm over ~25 tests still resolves 0.05
ALPHA = 0.05  # the family-wise error rate of the quality verdicts
GROUP = ["task", "pair", "sampling_key", "max_new_tokens"]  # cells in one group ran the same examples


@dataclass
class Estimate:
    value: float | None
    ci: tuple[float, float] | None

    def text(self, digits: int = 1, signed: bool = False) -> str:
        """``value [low, high]``; ``signed`` for differences (+/-)."""
        if self.value is None or math.isnan(self.value):
            return "-"
        form = f"{'+' if signed else ''}.{digits}f"
        interval = "" if self.ci is None else f" [{self.ci[0]:{form}}, {self.ci[1]:{form}}]"
        return f"{self.value:{form}}{interval}"

    def verdict(self, null: float) -> str:
        """'higher', 'lower' or 'cannot tell' (the interval holds ``null``)."""
        if self.ci is None:
            return "cannot tell"
        return "higher" if self.ci[0] > null else "lower" if self.ci[1] < null else "cannot tell"


def per_problem(frame: pd.DataFrame, runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """[example id x seed] table of ``column`` for one cell's runs."""
    seeds = runs.set_index("run_id")["seed"]
    table = frame.assign(seed=frame["run_id"].map(seeds)).pivot(index="id", columns="seed", values=column)
    return table.sort_index(axis=1).astype(float)


def _means(num: np.ndarray, den: np.ndarray, counts: np.ndarray, problems: np.ndarray, rng):
    """([replicates, problems] means of ``num``, same of ``den``) over ``counts[p]`` seeds drawn
    with replacement from each chosen problem's row, the same draws for both (``rng`` None: the
    row's own seeds, no resampling)."""
    chosen = counts[problems]
    valid = np.arange(num.shape[1]) < chosen[..., None]
    if rng is None:
        draws = np.broadcast_to(np.arange(num.shape[1]), valid.shape)
    else:
        draws = (rng.random(valid.shape) * chosen[..., None]).astype(int)  # a seed index < count, per slot
    return tuple(np.where(valid, np.take_along_axis(m[problems], draws, axis=-1), 0.0).sum(-1) / chosen
                 for m in (num, den))


def paired(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], compare: str,
           transform=lambda x: x, samples: int = SAMPLES, seed: int = 0) -> Estimate:
    """A vs B on one statistic sum(num) / sum(den) over problems (each problem's seeds averaged
    first): ``compare`` 'diff' (f(A) - f(B)) or 'ratio' (f(A) / f(B)), with ``f = transform``.
    ``a`` and ``b`` are (num, den) [problems x seeds] matrices over the same problems, each row's
    present seeds first (NaN after). Interval: problems resampled, then each decoder's seeds
    within each problem."""
    counts = [np.sum(~np.isnan(num) & ~np.isnan(den), axis=1) for num, den in (a, b)]
    keep = (counts[0] > 0) & (counts[1] > 0)
    if not keep.any():
        return Estimate(None, None)
    a, b = ((np.nan_to_num(num[keep]), np.nan_to_num(den[keep])) for num, den in (a, b))
    counts = [c[keep] for c in counts]

    def statistic(problems: np.ndarray, rng) -> np.ndarray:
        values = []
        for (num, den), count in zip((a, b), counts):
            num_means, den_means = _means(num, den, count, problems, rng)
            values.append(transform(num_means.sum(-1) / den_means.sum(-1)))
        return values[0] - values[1] if compare == "diff" else values[0] / values[1]

    n = int(keep.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        point = float(statistic(np.arange(n)[None], None)[0])
        rng = np.random.default_rng(seed)
        replicates = statistic(rng.integers(n, size=(samples, n)), rng)
    replicates = replicates[np.isfinite(replicates)]
    if not math.isfinite(point) or len(replicates) < samples // 2:
        return Estimate(point if math.isfinite(point) else None, None)
    low, high = np.percentile(replicates, [2.5, 97.5])
    return Estimate(point, (float(low), float(high)))


def permutation_p(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
                  samples: int = PERMUTATIONS, seed: int = 0, chunk: int = 1000) -> float | None:
    """Two-sided p-value of A - B on the statistic of ``paired`` (sum(num) / sum(den) over problems,
    each problem's seeds averaged first), same (num, den) [problems x seeds] matrices: within each
    problem, the decoder labels of its runs are shuffled (A keeps as many runs as it ran), and p is
    the share of shuffles whose |A - B| reaches the observed one, counting the observed labelling
    ((1 + hits) / (1 + samples)). None: no problem both ran.

    Why this test where McNemar does not apply (e.g. ratings on a scale): its null is exactly "the
    two decoders' runs of a problem are exchangeable", which is what "cannot tell A from B" means
    and what a lossless decoder satisfies by construction; it needs no normal approximation and no
    bootstrap tail (a bootstrap p read off 2000 percentiles is coarse and optimistic exactly where
    Holm looks, near 0.05 / 25); and on one seed a side it is the sign-flip test over problems,
    which on solved-or-not scores is McNemar's exact test (by Monte Carlo), so the family's
    p-values all answer the same question. It pairs like the interval (problems, never pooled
    examples)."""
    counts = [np.sum(~np.isnan(num) & ~np.isnan(den), axis=1) for num, den in (a, b)]
    keep = (counts[0] > 0) & (counts[1] > 0)
    if not keep.any():
        return None
    num, den = (np.concatenate([a[i][keep], b[i][keep]], axis=1) for i in (0, 1))
    ran = ~np.isnan(num) & ~np.isnan(den)
    num, den, mine = np.nan_to_num(num), np.nan_to_num(den), counts[0][keep]
    theirs = counts[1][keep]

    def statistic(to_a: np.ndarray) -> np.ndarray:  # [..., problems, runs] labels: True for A
        sides = [(to_a & ran, mine), (~to_a & ran, theirs)]
        means = [[np.where(side, m, 0.0).sum(-1) / count for m in (num, den)] for side, count in sides]
        return np.abs(means[0][0].sum(-1) / means[0][1].sum(-1) - means[1][0].sum(-1) / means[1][1].sum(-1))

    with np.errstate(divide="ignore", invalid="ignore"):
        observed = statistic(np.arange(num.shape[1]) < a[0].shape[1])  # A's runs come first
    if not math.isfinite(observed):
        return None
    rng, hits = np.random.default_rng(seed), 0
    for start in range(0, samples, chunk):
        keys = np.where(ran, rng.random((min(chunk, samples - start), *num.shape)), np.inf)
        cut = np.take_along_axis(np.sort(keys, axis=-1), (mine - 1)[None, :, None], axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            hits += int(np.sum(statistic(keys <= cut) >= observed * (1 - 1e-9)))
    return (1 + hits) / (1 + samples)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (Holm 1979): the i-th smallest of m p-values times (m - i + 1),
    made non-decreasing in that order, capped at 1. Rejecting where the adjusted p < alpha keeps
    the chance of any false rejection in the family at alpha or less, whatever the dependence."""
    p = np.asarray(p_values, float)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    return adjusted.tolist()


def quality_verdict(row: dict) -> str:
    """'higher' / 'lower' when the Holm-adjusted p is below ``ALPHA`` and the interval excludes 0
    on that side, else 'cannot tell' ('-': no paired quality)."""
    if row["quality"].value is None:
        return "-"
    return row["quality"].verdict(0.0) if row.get("p_holm") is not None and row["p_holm"] < ALPHA else "cannot tell"


def adjust(rows: list[dict]) -> list[dict]:
    """Holm over the family of every quality comparison in ``rows`` (those with a p-value): each
    row gets ``p_holm``, ``family`` (the family's size) and its ``verdict``."""
    tested = [row for row in rows if row.get("p") is not None]
    for row, adjusted in zip(tested, holm([row["p"] for row in tested])):
        row.update(p_holm=adjusted, family=len(tested))
    for row in rows:
        row["verdict"] = quality_verdict(row)
    return rows


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs against Binomial(n, 1/2)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def matrices(frames: dict, cell_a, cell_b, num: str, den: str | None):
    """(num, den) matrices of two cells over the example ids both ran, seeds left-aligned."""
    tables = []
    for cell in (cell_a, cell_b):
        frame, runs = frames[cell]
        pieces = [per_problem(frame, runs, num)]
        if den:
            pieces.append(per_problem(frame, runs, den))
        tables.append(pieces)
    ids = sorted(set(tables[0][0].index) & set(tables[1][0].index))
    out = []
    for pieces in tables:
        num_m = _left_align(pieces[0].loc[ids].to_numpy(float))
        den_m = _left_align(pieces[1].loc[ids].to_numpy(float)) if den else np.where(np.isnan(num_m), np.nan, 1.0)
        out.append((num_m, den_m))
    return out, ids


def rated_units(frames: dict, cell_a, cell_b):
    """Quality (num, den) matrices of two cells over the problems both ran, like ``matrices``:
    per problem, the units of its scores (``Task.scores``: e.g. the turns of a conversation) that
    every run of both cells rated; num is the sum of a run's scores on those units, den their
    count. A unit rated on one side only drops out on both: a rater may rate a second turn higher,
    so scoring one decoder on turn 2 alone where the other is scored on both turns would bias the
    difference."""
    per_cell = []
    for cell in (cell_a, cell_b):
        frame, runs = frames[cell]
        seed = runs.set_index("run_id")["seed"]
        rows: dict = {}
        for run_id, example, scores in frame[["run_id", "id", "scores"]].itertuples(index=False):
            rows.setdefault(example, []).append((seed[run_id], list(scores or [])))
        per_cell.append({example: [r for _, r in sorted(seeds, key=lambda x: x[0])] for example, seeds in rows.items()})
    ids = sorted(set(per_cell[0]) & set(per_cell[1]))
    out = [tuple(np.full((len(ids), max(map(len, cell.values()), default=1)), np.nan) for _ in range(2))
           for cell in per_cell]
    for i, example in enumerate(ids):
        every = per_cell[0][example] + per_cell[1][example]
        units = [u for u in range(max(map(len, every))) if all(u < len(r) and r[u] is not None for r in every)]
        if units:  # else the problem stays NaN on both sides and the comparison leaves it out
            for (num, den), cell in zip(out, per_cell):
                for j, scores in enumerate(cell[example]):
                    num[i, j], den[i, j] = sum(scores[u] for u in units), len(units)
    return out, ids


def _point(num: np.ndarray, den: np.ndarray) -> float | None:
    """sum(num) / sum(den) over the problems with a value, each problem's seeds averaged first."""
    rows = ~np.isnan(num).all(axis=1)
    return float(np.nanmean(num[rows], axis=1).sum() / np.nanmean(den[rows], axis=1).sum()) if rows.any() else None


def _left_align(matrix: np.ndarray) -> np.ndarray:
    """Each row's present values first (the bootstrap draws from the first ``count`` columns)."""
    order = np.argsort(np.isnan(matrix), axis=1, kind="stable")
    return np.take_along_axis(matrix, order, axis=1)


def label(cell: tuple, params: dict) -> str:
    decoder = cell[CELL.index("decoder")]
    shown = {k: v for k, v in params.items() if k in ("tau",)} if decoder == "mtad" else {}
    return decoder + (f" ({params_label(shown)})" if shown else "")


def ran_both(frames: dict, a, b) -> bool:
    return a in frames and b in frames


def compare_cells(quality: dict, speed: dict, a, b, metric: Metric) -> dict:
    """Every paired statistic of cell ``a`` against cell ``b`` (see the module doc). Quality
    needs both cells' quality runs; tokens/s and J/token both in one speed sweep; block efficiency
    (machine-independent) comes from the quality runs, else from the sweep."""
    none = Estimate(None, None)
    out = {"examples": 0, "quality": none, "quality_a": none, "quality_b": none, "ppl": none, "block_efficiency": none}
    # examples not rated yet (answers still to be graded): perplexity and block efficiency, no paired quality
    graded = ran_both(quality, a, b) and all(quality[c][0]["quality"].notna().any() for c in (a, b))
    if graded:
        (qa, qb), ids = rated_units(quality, a, b)
        out["quality"] = paired(qa, qb, "diff")
        out["quality_a"], out["quality_b"] = (Estimate(_point(*m), None) for m in (qa, qb))
        common = sorted(set(quality[a][1]["seed"]) & set(quality[b][1]["seed"]))
        if common and len(ids) and metric.solved_or_not:
            s = common[0]
            x, y = (per_problem(*quality[c], "quality")[s].reindex(ids).to_numpy() for c in (a, b))
            both = ~np.isnan(x) & ~np.isnan(y)
            a_only, b_only = int(((x > 0) & (y == 0) & both).sum()), int(((x == 0) & (y > 0) & both).sum())
            out["mcnemar"] = {"seed": int(s), "a_only": a_only, "b_only": b_only, "p": mcnemar_exact(a_only, b_only)}
            out["p"], out["p_test"] = out["mcnemar"]["p"], "McNemar"
        elif out["quality"].value is not None:
            out["p"], out["p_test"] = permutation_p(qa, qb), "permutation"
    if ran_both(quality, a, b):
        (la, lb), ids = matrices(quality, a, b, "log_prob", None)
        out["examples"] = len(ids)
        out["ppl"] = paired(la, lb, "diff", transform=lambda x: np.exp(-x))
    source = quality if ran_both(quality, a, b) else speed if ran_both(speed, a, b) else None
    if source is not None:
        (ba, bb), _ = matrices(source, a, b, "tokens", "target_calls")
        out["block_efficiency"] = paired(ba, bb, "ratio")
    if ran_both(speed, a, b):
        (sa, sb), _ = matrices(speed, a, b, "timed_tokens", "seconds")  # not examples that compiled a shape
        out["speed"] = paired(sa, sb, "ratio")
        (ea, eb), _ = matrices(speed, a, b, "joules", "timed_tokens")
        out["energy"] = paired(ea, eb, "ratio") if not np.isnan(ea[0]).all() else None
    return out


def frames_of(store: Store) -> tuple[dict, dict]:
    """{cell: (examples, runs)} of a store, and {cell: decoder params}."""
    frames, params = {}, {}
    for key, runs in store.runs.groupby(CELL, sort=False):
        frames[key] = (store.examples[store.examples["run_id"].isin(runs["run_id"])], runs)
        params[key] = runs.iloc[0]["decoder_params"]
    return frames, params


def comparisons(store: Store, speed_store: Store | None) -> list[dict]:
    """Per task group: each decoder against AR and SpD, as dicts, their quality p-values
    Holm-adjusted over all of them (``adjust``). A cell only the speed sweep ran (its quality run
    not there yet) is compared on speed alone."""
    quality, params = frames_of(store)
    speed, speed_params = frames_of(speed_store) if speed_store is not None else ({}, {})
    metrics = metrics_of(store, speed_store)
    params = {**speed_params, **params}
    out = []
    groups: dict[tuple, list] = {}
    for cell in list(quality) + [c for c in speed if c not in quality]:
        groups.setdefault(tuple(cell[CELL.index(c)] for c in GROUP), []).append(cell)
    for group, cells in sorted(groups.items()):
        task = group[0]
        metric = metrics.get(task)
        if metric is None:  # a task measuring speed only
            continue
        by_decoder = {}
        for cell in cells:
            by_decoder.setdefault(cell[CELL.index("decoder")], []).append(cell)
        order = sorted(cells, key=lambda c: (DECODER_ORDER.index(c[2]) if c[2] in DECODER_ORDER else 99, c[3]))
        for reference in ("ar", "spd"):
            for ref in by_decoder.get(reference, [])[:1]:
                for cell in order:
                    if cell == ref or cell[CELL.index("decoder")] == "ar":  # AR is the first reference
                        continue
                    if not (ran_both(quality, cell, ref) or ran_both(speed, cell, ref)):
                        continue  # no store ran both
                    out.append({"task": task, "pair": group[1], "a": label(cell, params[cell]), "b": reference,
                                "seeds_a": seeds_of(quality, cell), "seeds_b": seeds_of(quality, ref),
                                **compare_cells(quality, speed, cell, ref, metric)})
    return adjust(out)


def seeds_of(frames: dict, cell) -> list[int]:
    return sorted(int(s) for s in frames[cell][1]["seed"]) if cell in frames else []


def seeds(values: list[int]) -> str:
    return ",".join(map(str, values)) or "-"


def p_text(p) -> str:
    """A p-value as the tables show it ('-': none)."""
    if not isinstance(p, float) or math.isnan(p):
        return "-"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def family_note(rows: list[dict]) -> str:
    """The legend's line on the quality p-values and their family."""
    family = max((row.get("family") or 0 for row in rows), default=0)
    return (f"Quality p: one per comparison, McNemar's exact where the task scores solved-or-not, else a "
            f"permutation test over problems ({PERMUTATIONS} shuffles of the decoder labels within each problem); "
            f"Holm p: adjusted over the family of all {family} quality comparisons in this file (every task, every "
            f"decoder against AR and against SpD), so the chance of any false quality `higher` / `lower` here is at "
            f"most {ALPHA:g}.")


def legend(rows: list[dict], metrics: dict[str, Metric | None]) -> list[str]:
    """The paragraphs above the comparison tables (Markdown inline code in backticks)."""
    notes = [metrics[task].paired_note for task in dict.fromkeys(r["task"] for r in rows) if metrics[task].paired_note]
    return ["A vs B over the problems both ran: differences (A - B, points) and ratios (A / B) with 95% paired "
            f"bootstrap intervals ({SAMPLES} resamples of problems, seeds resampled within each problem); McNemar: "
            "problems solved by A only / by B only at the first seed both ran. tok/s and J/token ratios come "
            "from the interleaved speed sweep (`-`: no sweep measured both). Quality verdict: `higher` / `lower` "
            f"when the Holm p < {ALPHA:g} and the interval excludes no difference, else `cannot tell`; tok/s "
            "verdict: the interval alone." + "".join(" " + note for note in notes), family_note(rows)]


COLUMNS = ["A", "B", "seeds A / B", "problems", "quality A", "quality B", "A - B [95% CI]", "McNemar A only / B only",
           "p (test)", "Holm p", "verdict", "target ppl A - B", "block eff. A / B", "tok/s A / B", "J/token A / B"]


def by_task(rows: list[dict]) -> list[tuple[tuple[str, str], list[dict]]]:
    """The rows per (task, pair), in their order."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["pair"]), []).append(row)
    return list(groups.items())


def cells(row: dict, digits: int) -> list[str]:
    """One comparison as the table's ``COLUMNS`` show it (``digits``: the task's quality decimals)."""
    mc = row.get("mcnemar")
    mc = f"{mc['a_only']} / {mc['b_only']} (seed {mc['seed']})" if isinstance(mc, dict) else "-"
    raw = p_text(row.get("p"))
    raw = f"{raw} ({row['p_test']})" if raw != "-" else raw
    speed, energy = row.get("speed"), row.get("energy")
    speed_text = speed.text(2) + " " + speed.verdict(1.0) if isinstance(speed, Estimate) else "-"
    energy_text = energy.text(2) if isinstance(energy, Estimate) else "no meter" if speed_text != "-" else "-"
    return [row["a"], row["b"], f"{seeds(row['seeds_a'])} / {seeds(row['seeds_b'])}", str(row["examples"] or "-"),
            row["quality_a"].text(digits), row["quality_b"].text(digits), row["quality"].text(digits, signed=True),
            mc, raw, p_text(row.get("p_holm")), row["verdict"], row["ppl"].text(3, signed=True),
            row["block_efficiency"].text(2), speed_text, energy_text]


def markdown_table(header: list[str], lines: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(c) + " |" for c in lines]


def to_markdown(rows: list[dict], metrics: dict[str, Metric | None]) -> str:
    """``metrics``: task -> its declared metric (digits and the legend's notes)."""
    intro, family = legend(rows, metrics)
    lines = ["# Paired comparisons", "", "Written by `make table` (`mtad/report/paired.py`). " + intro, "", family, ""]
    for (task, pair), group in by_task(rows):
        digits = metrics[task].paired_digits
        lines += [f"## {task}, {pair}", "", *markdown_table(COLUMNS, [cells(row, digits) for row in group]), ""]
    return "\n".join(lines)


def beside_rows(rows: list[dict], paper: dict[tuple, dict]) -> list[tuple[tuple[str, str], list[str], list[list[str]]]]:
    """Per task and pair: (its key, the header, the lines) of each decoder against AR and SpD
    (ours), and the paper's decoders against its SpD on the Llama-3 pairs (the paper ran no AR)."""
    paper_pairs = sorted({pair for _, pair, _ in paper})
    header = (["decoder", "quality - AR", "speed-up vs AR", "quality - SpD", "speed-up vs SpD"]
              + [f"paper {p}: {what}" for p in paper_pairs for what in ("quality - SpD", "speed-up vs SpD")])
    out = []
    for (task, pair), group in by_task(rows):
        found = {(r["a"], r["b"]): r for r in group}
        decoders = list(dict.fromkeys(r["a"] for r in group))
        lines = []
        for decoder in ["spd"] + [d for d in decoders if d != "spd"]:
            line = [decoder]
            for reference in ("ar", "spd"):
                row = found.get((decoder, reference))
                speed = row.get("speed") if row else None
                line += ["-" if row is None else row["quality"].text(signed=True),
                         speed.text(2) if isinstance(speed, Estimate) else "-"]
            name = decoder.split(" ")[0]
            for p in paper_pairs:
                mine, spd = paper.get((task, p, name)), paper.get((task, p, "spd"))
                if mine and spd:  # every variant of a decoder beside the paper's (tuned) one
                    line += [f"{mine['quality'] - spd['quality']:+.1f}",
                             f"{mine['tokens_per_s'] / spd['tokens_per_s']:.2f}"]
                else:
                    line += ["-", "-"]
            lines.append(line)
        out.append(((task, pair), header, lines))
    return out


def beside_paper(rows: list[dict], paper: dict[tuple, dict]) -> str:
    """``beside_rows`` in Markdown, a section per task and pair."""
    lines = []
    for (task, pair), header, table in beside_rows(rows, paper):
        lines += [f"## {task}, {pair}: every decoder, beside the paper", "", *markdown_table(header, table), ""]
    return "\n".join(lines)


def write_comparisons(results_dir: Path, rows: list[dict], metrics: dict[str, Metric | None],
                      paper: dict[tuple, dict] | None = None) -> Path:
    """``rows``: ``comparisons(store, speed_store)``; ``metrics``: ``metrics_of`` the same stores."""
    path = Path(results_dir) / "comparisons.md"
    text = to_markdown(rows, metrics) + "\n" + beside_paper(rows, paper or {}) + "\n"
    write_atomic(path, text)
    serialisable = [{k: (v.__dict__ if isinstance(v, Estimate) else v) for k, v in row.items()} for row in rows]
    write_atomic(Path(results_dir) / "comparisons.json", json.dumps(serialisable, indent=1, default=str) + "\n")
    return path


def agreement_plots(store: Store, folder: Path, a: str = "mtad", b: str = "ar") -> list[Path]:
    """Per task: which problems decoder ``a`` and ``b`` solve (share of seeds), problem by problem,
    and the 2 x 2 counts at their first common seed."""
    import matplotlib.pyplot as plt

    from mtad.report.plots import _save

    quality, params = frames_of(store)
    paths = []
    for cell_a in quality:
        task, pair = cell_a[0], cell_a[1]
        metric = store.metrics.get(task)
        if cell_a[2] != a or metric is None or not metric.solved_or_not or params[cell_a].get("tau", 0.5) != 0.5:
            continue
        cell_b = next((c for c in quality if c[2] == b and c[:2] == cell_a[:2] and c[4:] == cell_a[4:]), None)
        if cell_b is None:
            continue
        (qa, qb), ids = matrices(quality, cell_a, cell_b, "quality", None)
        rate_a, rate_b = (np.nanmean(np.where(np.isnan(m[0]), np.nan, m[0] > 0), axis=1) for m in (qa, qb))
        order = np.lexsort((rate_a, rate_b))[::-1]
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 2.8), gridspec_kw={"width_ratios": [5, 1]})
        left.imshow(np.vstack([rate_b[order], rate_a[order]]), aspect="auto", cmap="Greens", vmin=0, vmax=1,
                    interpolation="nearest")
        left.set_yticks([0, 1], [b, a])
        left.set_xlabel(f"{len(ids)} problems, sorted by {b} then {a} (shade: share of seeds solved)")
        solved_a, solved_b = qa[0][:, 0] > 0, qb[0][:, 0] > 0  # each problem's first seed
        counts = np.array([[np.sum(solved_a & solved_b), np.sum(~solved_a & solved_b)],
                           [np.sum(solved_a & ~solved_b), np.sum(~solved_a & ~solved_b)]])
        right.imshow(counts, cmap="Blues")
        for (i, j), count in np.ndenumerate(counts):
            right.text(j, i, str(count), ha="center", va="center")
        right.set_xticks([0, 1], ["solves", "fails"])  # "<a> solves" labels would overlap
        right.set_xlabel(a)
        right.set_yticks([0, 1], [f"{b} solves", f"{b} fails"])
        right.set_title("first seed", fontsize=9)
        fig.suptitle(f"{task}, {pair}: who solves what, {a} vs {b}")
        paths += _save(fig, folder, f"agreement_{a}_{b}_{task}")
    return paths
