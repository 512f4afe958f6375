"""`make table`: the paper-layout table, bootstrap intervals, speed-ups in the same sweep, plots
and the HTML report, from a hand-made results store (known numbers) and from a real tiny sweep."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtad.job.records import append_line
from mtad.report.formats import write_tables
from mtad.report.rows import bootstrap, build_rows, collect
from tasks.catalogue import TASKS

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "results" / "paper_table.csv"


def declared(task: str) -> dict | None:
    """A run summary's ``metric``: what the harness records for ``task``."""
    metric = TASKS[task].metric
    return None if metric is None else metric.to_record()


def add_run(results: Path, run_id: str, decoder: str, seed: int, seconds: float, passed: list[bool], sweep="s1",
            joules=None, versions=None, task="humaneval", max_new_tokens=128, verdicts=None, quality=None):
    """A HumanEval run (or ``task``'s) on the llama3 pair: every example emits 10 tokens in ``seconds``
    (``verdicts``: other tasks' verdicts, one per ``passed``; ``quality``: the run's own)."""
    samples = [{"run_id": run_id, "id": f"HumanEval/{i}#0", "new_tokens": list(range(10)),
                "stats": {"wall_seconds": seconds}, "energy_joules": joules,
                "verdict": verdicts[i] if verdicts else {"passed": p}}
               for i, p in enumerate(passed)]
    for sample in samples:
        sample["scores"] = TASKS[task].scores(sample["verdict"])
        append_line(results / "samples" / f"{run_id}.jsonl", sample)
    append_line(results / "runs.jsonl", {
        "run_id": run_id, "sweep": sweep, "task": task, "pair": "llama3", "decoder": decoder,
        "decoder_params": {}, "seed": seed, "sampling": {"temperature": 1.0}, "max_new_tokens": max_new_tokens,
        "tokens_per_second": 10 / seconds, "block_efficiency": 1.0, "acceptance_per_position": [],
        "examples": len(passed), "totals": {"new_tokens": 10 * len(passed), "wall_seconds": seconds * len(passed)},
        "energy_joules": None if joules is None else joules * len(passed),
        "quality": quality or {"pass@1": sum(passed) / len(passed)}, "metric": declared(task),
        "versions": versions or {"harness": 1, "task": 1, "decoder": 1}})


def speed_sweep(results: Path, *decoders: tuple[str, float], examples=3, sweep="/x/speed-sweep", task="humaneval") -> Path:
    """A speed store under ``results/speed``: one run of ``examples`` per (decoder, seconds per example)."""
    speed = results / "speed"
    (speed / "samples").mkdir(parents=True)
    for decoder, seconds in decoders:
        add_run(speed, f"{decoder}-s", decoder, 1, seconds, [True] * examples, sweep=sweep, task=task)
    return speed


@pytest.fixture
def store(tmp_path):
    (tmp_path / "samples").mkdir()
    add_run(tmp_path, "ar1", "ar", 1, 1.0, [True, False, False, False])
    add_run(tmp_path, "spd1", "spd", 1, 0.5, [True, False, True, False])
    add_run(tmp_path, "mtad1", "mtad", 1, 0.25, [True, True, True, False], joules=2.0)
    add_run(tmp_path, "mtad2", "mtad", 2, 0.25, [True, True, False, False], joules=2.0)
    return tmp_path


def row(table, task, model, decoder):
    (found,) = [r for r in table if (r["task"], r["pair"], r["decoder"]) == (task, model, decoder)]
    return found


def test_table_values_speedups_intervals_and_paper_numbers(store):
    table = build_rows(collect(store), PAPER).rows
    mtad = row(table, "humaneval", "llama3", "mtad")["ours"]
    assert mtad["tokens_per_s"] == pytest.approx(40.0) and mtad["seeds"] == 2 and mtad["examples"] == 8
    assert mtad["vs_ar"] == pytest.approx(4.0) and mtad["vs_spd"] == pytest.approx(2.0)  # seed 1 has both; seed 2 neither
    assert mtad["quality"] == pytest.approx(62.5) and mtad["joules_per_token"] == pytest.approx(0.2)
    low, high = mtad["quality_ci"]
    assert 0 <= low < 62.5 < high <= 100
    assert row(table, "humaneval", "llama3", "ar")["ours"]["joules_per_token"] is None  # no meter: no number
    assert row(table, "humaneval", "llama3", "mtad")["paper"]["tokens_per_s"] == 25.6
    assert row(table, "spider", "llama3", "bild")["ours"] is None  # in the paper, not run here


def test_bootstrap_interval():
    assert bootstrap([3.0] * 20, [1.0] * 20) == (3.0, 3.0)
    low, high = bootstrap(range(100), np.ones(100))
    assert 40 < low < 49.5 < high < 59  # about 49.5 +- 1.96 * 2.9
    low, high = bootstrap([10.0, 30.0], [1.0, 1.0])  # a ratio of sums: 10, 20 or 30
    assert (low, high) == (10.0, 30.0)
    assert bootstrap([], []) is None and bootstrap([1.0], [0.0]) is None


def per_example_bootstrap(num, den, samples=1000, seed=0):
    """The textbook one-level bootstrap of sum(num) / sum(den): examples drawn with replacement."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    drawn = np.random.default_rng(seed).integers(len(num), size=(samples, len(num)))
    return tuple(np.percentile(num[drawn].sum(axis=1) / den[drawn].sum(axis=1), [2.5, 97.5]))


def two_level_bootstrap(groups, samples=1000, seed=0):
    """The cell interval before issue 36 (kept as the negative control): seeds resampled, then
    examples independently within each chosen seed, as if a problem's seeds were unrelated."""
    rng = np.random.default_rng(seed)
    chosen = rng.integers(len(groups), size=(samples, len(groups)))
    numerator, denominator = np.zeros(samples), np.zeros(samples)
    for slot in range(len(groups)):
        for g, (n, d) in enumerate(groups):
            picked = chosen[:, slot] == g
            index = rng.integers(len(n), size=(int(picked.sum()), len(n)))
            numerator[picked] += n[index].sum(axis=1)
            denominator[picked] += d[index].sum(axis=1)
    return tuple(np.percentile(numerator / denominator, [2.5, 97.5]))


def test_one_seed_resamples_its_examples_one_by_one():
    """One seed: every example is its own problem, so the interval is the per-example bootstrap."""
    rng = np.random.default_rng(5)
    num, den = rng.integers(0, 4, 120).astype(float), rng.integers(1, 4, 120).astype(float)
    ids = [f"HumanEval/{i:03d}" for i in range(120)]
    direct = per_example_bootstrap(num, den)
    assert bootstrap(num, den, ids) == pytest.approx(direct) == bootstrap(num, den)
    assert direct[0] < num.sum() / den.sum() < direct[1]


def test_seeds_that_agree_on_every_problem_add_no_information(tmp_path):
    """Three seeds with the same outcome on every problem: the cell's interval is one seed's
    interval (the draws are the same problems), where the old two-level bootstrap, treating the
    three seeds' examples as independent, gives one about sqrt(3) times narrower."""
    (tmp_path / "samples").mkdir()
    passed = list(np.random.default_rng(3).random(150) < 0.45)
    for seed in (1, 2, 3):
        add_run(tmp_path, f"ar{seed}", "ar", seed, 1.0, passed)
    add_run(tmp_path, "spd1", "spd", 1, 1.0, passed)
    rows = build_rows(collect(tmp_path), PAPER).rows
    three, one = (row(rows, "humaneval", "llama3", d)["ours"]["quality_ci"] for d in ("ar", "spd"))
    assert three == pytest.approx(one)
    outcomes = np.array(passed, float) * 100
    old = two_level_bootstrap([(outcomes, np.ones(150))] * 3)  # negative control
    width = three[1] - three[0]
    assert 12 < width < 20 and width > 1.5 * (old[1] - old[0])  # one seed: 2 * 1.96 * sqrt(.45 * .55 / 150)


def test_problems_with_unequal_numbers_of_seeds():
    """A problem brings all its seeds' values: two problems, one solved at three seeds, one
    failed at its one seed, give ratios 1 (drawn twice), 3/4 (once each) or 0 (twice)."""
    low, high = bootstrap([1.0, 1.0, 1.0, 0.0], np.ones(4), ["p1", "p1", "p1", "p2"], samples=4000)
    assert (low, high) == (0.0, 1.0)
    rng = np.random.default_rng(7)  # 40 problems x 1 to 3 seeds, rows shuffled: the definition, draw by draw
    seeds = rng.integers(1, 4, 40)
    ids = np.repeat(np.arange(40), seeds)
    num, order = rng.random(len(ids)), rng.permutation(len(ids))
    drawn = np.random.default_rng(0).integers(40, size=(1000, 40))
    ratios = [np.concatenate([num[ids == p] for p in draw]).sum() / seeds[draw].sum() for draw in drawn]
    expected = np.percentile(ratios, [2.5, 97.5])
    assert bootstrap(num[order], np.ones(len(ids)), ids[order]) == pytest.approx(expected)
    assert bootstrap(num, np.ones(len(ids))) != pytest.approx(expected)  # rows as problems: another interval


def markdown_row(text: str, *first: str) -> list[str]:
    """The cells of the Markdown table row that starts with ``first``."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    (found,) = [r for r in rows if r[:len(first)] == list(first)]
    return found


def test_files_say_not_run_never_blank(store):
    write_tables(store, build_rows(collect(store), PAPER).rows)
    markdown = (store / "table.md").read_text()
    assert markdown_row(markdown, "spider", "llama3", "bild")[3:5] == ["-", "not run"] and "no meter" in markdown
    assert "\\begin{tabular}" in (store / "table.tex").read_text()
    rows = list(csv.DictReader((store / "table.csv").open()))
    assert all(value != "" for r in rows for value in r.values())
    bild = next(r for r in rows if (r["task"], r["pair"], r["decoder"]) == ("spider", "llama3", "bild"))
    assert bild["tokens_per_s"] == "not run" and bild["paper_tokens_per_s"] == "23.3"


def test_make_table_after_a_tiny_sweep_with_two_seeds(tmp_path):
    env = {**os.environ, "MTAD_RESULTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    sweep = subprocess.run([sys.executable, "run.py", "-m", "pair=tiny", "task=humaneval", "task.limit=2",
                            "decoder=ar,spd,mtad", "seed=1,2", "max_new_tokens=12", f"hydra.sweep.dir={tmp_path / 's'}"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    made = subprocess.run([sys.executable, "-m", "mtad.report", "--results", str(tmp_path), "--paper", str(PAPER)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]
    assert markdown_row((tmp_path / "table.md").read_text(), "humaneval", "tiny", "mtad")[3:6] == ["-", "2", "4"]
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert {"speed_vs_quality_humaneval.png", "speed_vs_quality_humaneval.svg", "acceptance_per_position.png"} <= set(plots)
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<table>" in page and "plots/speed_vs_quality_humaneval.png" in page and "http" not in page
    newest = max(json.loads(line)["created"] for line in (tmp_path / "runs.jsonl").read_text().splitlines())
    assert f"records up to {newest[:16].replace('T', ' ')} UTC" in page  # the store's time, not the build's
    assert (tmp_path / "report" / "plots" / "speed_vs_quality_humaneval.png").exists()
    built = lambda: {p: p.read_bytes() for p in [*(tmp_path / "plots").iterdir(), tmp_path / "report" / "index.html"]}  # noqa: E731
    before = built()
    again = subprocess.run([sys.executable, "-m", "mtad.report", "--results", str(tmp_path), "--paper", str(PAPER)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and built() == before  # a rebuild from the same store: the same bytes
    summaries = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert sorted({s["seed"] for s in summaries}) == [1, 2]


def test_spider_rows_name_the_databases_that_scored_them(tmp_path):
    (tmp_path / "samples").mkdir()
    append_line(tmp_path / "samples" / "sp.jsonl", {"id": "spider/0", "new_tokens": [1], "stats": {"wall_seconds": 1.0},
                                                     "energy_joules": None, "verdict": {"correct": True, "gold_failed": False},
                                                     "scores": [100.0]})
    append_line(tmp_path / "runs.jsonl", {
        "run_id": "sp", "sweep": None, "task": "spider", "pair": "qwen2.5-coder", "decoder": "mtad", "decoder_params": {},
        "seed": 0, "sampling": {}, "max_new_tokens": 8, "tokens_per_second": 1.0, "block_efficiency": 1.0,
        "examples": 1, "totals": {"new_tokens": 1, "wall_seconds": 1.0}, "energy_joules": None,
        "acceptance_per_position": [], "quality": {"execution_accuracy": 100.0, "database_mode": "synthetic"},
        "metric": declared("spider")})
    write_tables(tmp_path, build_rows(collect(tmp_path), PAPER).rows)
    assert markdown_row((tmp_path / "table.md").read_text(), "spider", "qwen2.5-coder", "mtad")[3:13] == \
        ["-", "1", "1", "1.00 [1.00, 1.00]", "-", "-", "-", "no meter", "100.0 [100.0, 100.0]",
         "exec. acc. % (synthetic DBs)"]


def test_judged_mt_bench_rows_have_intervals_and_name_their_judge(tmp_path):
    (tmp_path / "samples").mkdir()
    add_run(tmp_path, "mt", "mtad", 1, 1.0, [True] * 3, task="mtbench", quality={"mt_bench_score": 5.0, "judge": "qwen-1.5b"},
            verdicts=[{"ratings": [4, 6]}, {"ratings": [2, None]}, {"ratings": [8, 7]}])
    write_tables(tmp_path, build_rows(collect(tmp_path), PAPER).rows)
    markdown = (tmp_path / "table.md").read_text()
    cells = markdown_row(markdown, "mtbench", "llama3", "mtad")
    assert cells[11].startswith("5.0 [") and cells[11] != "5.0" and cells[12] == "MT-Bench (judge qwen-1.5b)"
    assert "by qwen-1.5b" in markdown and "is weak" in markdown


def test_the_mt_bench_interval_is_over_rated_turns_like_fastchats_score(tmp_path):
    """The score weighs each rated turn once; so does its interval (questions resampled, each
    bringing its sum and count of rated turns), not the mean of per-question means."""
    (tmp_path / "samples").mkdir()
    ratings = [[2, None], [9, 8], [3, None], [7, 9], [1, None], [8, 8]]
    add_run(tmp_path, "mt", "mtad", 1, 1.0, [True] * 6, task="mtbench", quality={"mt_bench_score": 55 / 9, "judge": "j"},
            verdicts=[{"ratings": r} for r in ratings])
    ci = row(build_rows(collect(tmp_path), PAPER).rows, "mtbench", "llama3", "mtad")["ours"]["quality_ci"]
    sums, counts = [2, 17, 3, 16, 1, 16], [1, 2, 1, 2, 1, 2]
    assert ci == pytest.approx(bootstrap(sums, counts))
    assert ci != pytest.approx(bootstrap(np.array(sums) / np.array(counts), np.ones(6)))  # negative control


def test_runs_without_per_example_records_use_their_totals(store):
    for path in (store / "samples").glob("mtad*.jsonl"):
        path.unlink()
    mtad = row(build_rows(collect(store), PAPER).rows, "humaneval", "llama3", "mtad")["ours"]
    assert mtad["tokens_per_s"] == pytest.approx(40.0) and mtad["tokens_per_s_ci"] is None
    assert mtad["joules_per_token"] == pytest.approx(0.2) and mtad["examples"] == 8


def test_a_cell_shows_only_its_newest_code_version(store):
    """A stale MTAD record (decoder version 1) beside a newer one (version 2) with other numbers:
    the cell takes version 2 alone and the table says one run was left out."""
    add_run(store, "mtad3", "mtad", 1, 0.5, [False, False, False, False],
            versions={"harness": 1, "task": 1, "decoder": 2})
    table = build_rows(collect(store), PAPER)
    mtad = row(table.rows, "humaneval", "llama3", "mtad")["ours"]
    assert table.ignored == 2  # mtad1 and mtad2 (version 1) are left out
    assert mtad["tokens_per_s"] == pytest.approx(20.0) and mtad["quality"] == pytest.approx(0.0)
    assert mtad["seeds"] == 1 and mtad["examples"] == 4 and mtad["vs_ar"] == pytest.approx(2.0)
    assert {r["run_id"] for r in table.runs if r["decoder"] == "mtad"} == {"mtad3"}
    assert row(table.rows, "humaneval", "llama3", "ar")["ours"]["examples"] == 4  # other cells untouched


def test_speed_columns_come_from_the_speed_store_and_never_from_the_quality_runs(store):
    speed = speed_sweep(store, ("ar", 2.0), ("mtad", 0.5))
    table = build_rows(collect(store), PAPER, collect(speed))
    mtad = row(table.rows, "humaneval", "llama3", "mtad")["ours"]
    assert mtad["tokens_per_s"] == pytest.approx(20.0) and mtad["vs_ar"] == pytest.approx(4.0)
    assert mtad["quality"] == pytest.approx(62.5) and mtad["examples"] == 8 and mtad["speed_examples"] == 3
    spd = row(table.rows, "humaneval", "llama3", "spd")["ours"]  # no speed run: no speed, though its run has one
    assert spd["tokens_per_s"] is None and spd["vs_ar"] is None and spd["quality"] == pytest.approx(50.0)
    assert mtad["vs_spd"] is None  # the speed sweep has no SpD
    write_tables(store, table.rows, table.speed_sources)
    markdown = (store / "table.md").read_text()
    assert markdown_row(markdown, "humaneval", "llama3", "spd")[6:9] == ["-", "-", "-"]
    assert "- `speed-sweep`: humaneval, 2 decoders x 3 examples" in markdown


def test_a_cell_only_the_speed_sweep_ran_has_a_row_with_its_speed_and_quality_not_run(store):
    """BiLD ran in the speed sweep alone: its row has the sweep's speed, speed-ups and block
    efficiency, and says "not run" for seeds, examples and quality (the sweep's passes are not a
    quality run); a decoder neither store ran keeps its all-"not run" paper row."""
    speed = speed_sweep(store, ("ar", 2.0), ("bild", 1.0))
    table = build_rows(collect(store), PAPER, collect(speed))
    bild = row(table.rows, "humaneval", "llama3", "bild")["ours"]
    assert bild["tokens_per_s"] == pytest.approx(10.0) and bild["vs_ar"] == pytest.approx(2.0)
    assert bild["quality"] is None and bild["seeds"] is None and bild["speed_examples"] == 3
    assert row(table.rows, "humaneval", "llama3", "typical")["ours"] is None
    write_tables(store, table.rows, table.speed_sources)
    shown = markdown_row((store / "table.md").read_text(), "humaneval", "llama3", "bild")
    assert shown[4:12] == ["not run", "not run", "10.00 [10.00, 10.00]", "2.00x", "-", "-", "no meter", "not run"]
    with open(store / "table.csv") as f:
        (csv_row,) = [r for r in csv.DictReader(f) if (r["task"], r["pair"], r["decoder"]) == ("humaneval", "llama3", "bild")]
    assert csv_row["quality"] == "not run" and csv_row["examples"] == "not run"
    assert float(csv_row["tokens_per_s"]) == pytest.approx(10.0)


def test_a_sweep_with_another_token_budget_gets_its_own_row_and_never_hides_the_full_run(store):
    speed = store / "speed"
    (speed / "samples").mkdir(parents=True)
    add_run(speed, "mtad-s", "mtad", 1, 0.5, [True] * 3, sweep="/x/speed-sweep", max_new_tokens=64)
    rows = [r for r in build_rows(collect(store), PAPER, collect(speed)).rows
            if (r["task"], r["pair"], r["decoder"]) == ("humaneval", "llama3", "mtad")]
    assert [r["params"] for r in rows] == ["", 'sampling={"temperature": 1.0}, max_new_tokens=64']
    assert rows[0]["ours"]["quality"] == pytest.approx(62.5) and rows[0]["ours"]["tokens_per_s"] is None
    assert rows[1]["ours"]["quality"] is None and rows[1]["ours"]["tokens_per_s"] == pytest.approx(20.0)
