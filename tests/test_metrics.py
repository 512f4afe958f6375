"""Tasks declare their quality metric (``tasks.base.Metric``, ``Task.scores``) and the records carry
it, so ``make table`` (mtad/report) knows no task: a task defined only in this file reaches the
table and the comparisons; the committed store carries the declarations (``mtad.job.migrate``)
and its example scores reproduce every run's quality."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mtad.job import migrate as migration
from mtad.job.records import JobRecorder, append_line, latest_runs, read_lines
from tasks import catalogue
from tasks.base import Example, Metric, Task, mean_score
from tasks.catalogue import TASKS, register_task

from test_tables import markdown_row

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
STORES = [RESULTS, RESULTS / "speed"]


# ---- the report names no task -------------------------------------------------------------------

def forbidden() -> set[str]:
    """Every task name, and every quality key a task declares (its metric's and its labels')."""
    words = set(TASKS)
    for task in TASKS.values():
        if task.metric is not None:
            words |= {task.metric.key, *(key for key, _ in task.metric.labels)}
    return words


def squeeze(text: str) -> str:
    """Lower case, letters, digits and '@' only: 'MT-Bench', 'mt_bench' and 'mtbench' all read alike."""
    return re.sub(r"[^a-z0-9@]", "", text.lower())


def mentions(text: str, words: set[str]) -> list[str]:
    return sorted(word for word in words if squeeze(word) in squeeze(text))


def test_the_report_names_no_task_and_no_task_metric_key():
    found = {str(path.relative_to(ROOT)): mentions(path.read_text(), forbidden())
             for path in sorted((ROOT / "mtad" / "report").rglob("*.py"))}
    assert found and not {path: words for path, words in found.items() if words}


def test_the_check_finds_a_planted_name():
    """Negative control: task names and metric keys, however spelt, are found."""
    words = forbidden()
    assert {"humaneval", "mtbench", "spider", "pass@1", "mt_bench_score", "database_mode"} <= words
    assert mentions('QUALITY = {"MT-Bench": ("mt_bench_score", 1.0)}', words) == ["mt_bench_score", "mtbench"]
    assert mentions("if task == 'HumanEval':", words) == ["humaneval"]
    assert mentions("tokens per second, block efficiency", words) == []


# ---- the committed store ------------------------------------------------------------------------

@pytest.mark.parametrize("store", STORES, ids=["results", "speed"])
def test_committed_runs_carry_their_metric_and_their_examples_reproduce_its_value(store):
    runs = latest_runs(store)
    assert runs
    for run in runs.values():
        task = TASKS[run["task"]]
        assert run["metric"] == (None if task.metric is None else task.metric.to_record()), run["run_id"]
        samples = read_lines(store / "samples" / f"{run['run_id']}.jsonl")
        assert all(s["scores"] == task.scores(s["verdict"]) for s in samples), run["run_id"]
        if task.metric is not None and task.metric.key in run["quality"]:
            # the mean of all rated units is the summary's value in the paper's unit
            rated = [u for s in samples for u in s["scores"] if u is not None]
            assert sum(rated) / len(rated) == pytest.approx(run["quality"][task.metric.key] * task.metric.factor)


def test_migration_adds_only_the_new_fields_atomically_and_is_idempotent(tmp_path):
    committed = latest_runs(RESULTS)
    chosen = {run["task"]: run for run in committed.values()}  # one run per task, the last
    old = tmp_path / "store"
    (old / "samples").mkdir(parents=True)
    strip = lambda record, key: {k: v for k, v in record.items() if k != key}  # noqa: E731
    for run in chosen.values():
        append_line(old / "runs.jsonl", strip(run, "metric"))
        for sample in read_lines(RESULTS / "samples" / f"{run['run_id']}.jsonl"):
            append_line(old / "samples" / f"{run['run_id']}.jsonl", strip(sample, "scores"))
    job = old / "jobs" / "sweep" / "0"
    job.mkdir(parents=True)
    (job / "summary.json").write_text(json.dumps(strip(chosen["mtbench"], "metric"), indent=2))
    append_line(old / "samples" / "unfinished.jsonl", {"id": "x", "verdict": {}})  # a run with no summary yet
    with open(old / "runs.jsonl", "a") as f:
        f.write('{"run_id": "cut sh')  # a line a kill cut short: kept as it was

    rewritten = migration.migrate(old)
    assert len(rewritten) == 1 + len(chosen) + 1
    for run in chosen.values():
        name = f"{run['run_id']}.jsonl"
        assert (old / "samples" / name).read_bytes() == (RESULTS / "samples" / name).read_bytes()
    lines = (old / "runs.jsonl").read_text().split("\n")
    assert [json.loads(line) for line in lines[:-1]] == list(chosen.values()) and lines[-1] == '{"run_id": "cut sh'
    assert json.loads((job / "summary.json").read_text()) == chosen["mtbench"]
    assert "scores" not in read_lines(old / "samples" / "unfinished.jsonl")[0]
    before = {path: path.read_bytes() for path in old.rglob("*") if path.is_file()}
    assert migration.migrate(old) == []
    assert {path: path.read_bytes() for path in old.rglob("*") if path.is_file()} == before
    assert not list(old.rglob(".*"))  # no temporary file left


def test_a_resumed_job_scores_the_examples_an_older_harness_recorded(tmp_path):
    recorder = JobRecorder(tmp_path / "job", tmp_path / "results", {"task": {"name": "humaneval"}}, {"task": 1})
    record = {"run_id": recorder.run_id, "id": "HumanEval/0#0", "verdict": {"passed": True}}
    append_line(recorder.store_samples, record)
    again = JobRecorder(tmp_path / "job", tmp_path / "results", {"task": {"name": "humaneval"}}, {"task": 1})
    again.rescore(TASKS["humaneval"].scores, only_missing=True)
    for path in (again.store_samples, again.samples_path):
        assert read_lines(path) == [{**record, "scores": [100.0]}]


def test_each_task_scores_its_examples_in_the_papers_unit():
    assert TASKS["humaneval"].scores({"passed": True}) == [100.0] and TASKS["humaneval"].scores({"passed": False}) == [0.0]
    assert TASKS["spider"].scores({"correct": True, "gold_failed": False}) == [100.0]
    assert TASKS["spider"].scores({"correct": False, "gold_failed": True}) == [None]
    assert TASKS["mtbench"].scores({"answers": ["a", "b"]}) == [None, None]  # before a judge rated them
    assert TASKS["mtbench"].scores({"answers": ["a", "b"], "ratings": [7, None]}) == [7, None]
    assert TASKS["synthetic"].metric is None and TASKS["synthetic"].scores({}) == []
    assert mean_score([7, None, 8]) == 7.5 and mean_score([None]) is None
    assert Metric.from_record(json.loads(json.dumps(TASKS["spider"].metric.to_record()))) == TASKS["spider"].metric


# ---- a task only this file defines --------------------------------------------------------------

@dataclass
class Toy(Task):
    """Three units per example from its reply's tokens, the last one unrated for some."""
    name = "toy"
    version = 1
    limit: int = 8
    metric = Metric(key="toy_score", title="toy score", paired_digits=2, labels=(("flavour", "{} flavour"),),
                    note="Toy score: the mean of the rated units, in {flavour} flavour.",
                    paired_note="Toy score: over the units rated for both A and B.")

    def examples(self, pair):
        return [Example(f"toy/{i}", [3 + i, 40 + 7 * i, 9]) for i in range(self.limit)]

    def score(self, example, replies, pair):
        (tokens,) = replies
        return {"tokens": list(tokens)}

    @classmethod
    def scores(cls, verdict):
        tokens = verdict["tokens"] or [0]
        return [float(tokens[0] % 10), float(tokens[-1] % 7), None if tokens[0] % 3 == 0 else 5.0]

    def quality(self, verdicts):
        rated = [u for v in verdicts for u in self.scores(v) if u is not None]
        return {"toy_score": sum(rated) / len(rated), "flavour": "vanilla"}


def test_register_task_refuses_a_name_taken(monkeypatch):
    monkeypatch.setattr(catalogue, "TASKS", dict(TASKS))
    assert register_task(Toy) is Toy and catalogue.TASKS["toy"] is Toy
    with pytest.raises(ValueError, match="two tasks are named 'toy'"):
        register_task(Toy)

    @dataclass
    class Impostor(Toy):
        name = "humaneval"
        version = 1

    with pytest.raises(ValueError, match="two tasks are named 'humaneval'"):
        register_task(Impostor)
    assert "toy" not in TASKS  # the real catalogue is untouched


def test_a_task_defined_in_a_test_reaches_make_table_and_the_comparisons(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from mtad.job.harness import run_job

    monkeypatch.setattr(catalogue, "TASKS", dict(TASKS))
    register_task(Toy)
    results = tmp_path / "results"
    for decoder in ("ar", "spd"):
        with initialize_config_dir(str(ROOT / "conf"), version_base=None):
            cfg = compose("config", overrides=["pair=tiny", "task=synthetic", f"decoder={decoder}", "max_new_tokens=8",
                                               "meter=none", "meter_idle_seconds=0", f"results_dir={results}"])
        with open_dict(cfg):
            cfg.task = OmegaConf.create({"name": "toy", "limit": 8})
        summary = run_job(cfg, tmp_path / "jobs" / decoder, sweep="toy-sweep")
        assert summary["metric"] == Toy.metric.to_record() and summary["quality"]["flavour"] == "vanilla"
    samples = [s for path in (results / "samples").glob("*.jsonl") for s in read_lines(path)]
    assert len(samples) == 16 and all(s["scores"] == Toy.scores(s["verdict"]) for s in samples)

    # the report runs in a process where no task is named toy: the records say it all
    made = subprocess.run([sys.executable, "-m", "mtad.report", "--results", str(results)], cwd=ROOT,
                          env={**os.environ, "MPLBACKEND": "Agg"}, capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]
    table = (results / "table.md").read_text()
    for decoder in ("ar", "spd"):
        cells = markdown_row(table, "toy", "tiny", decoder)
        assert re.fullmatch(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", cells[11]), cells[11]  # quality and its interval
        assert cells[12] == "toy score (vanilla flavour)"
    assert "Toy score: the mean of the rated units, in vanilla flavour." in table
    with open(results / "table.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["task"] == "toy"]
    assert len(rows) == 2 and all(float(r["quality_lo"]) <= float(r["quality"]) <= float(r["quality_hi"]) for r in rows)
    comparisons = (results / "comparisons.md").read_text()
    assert "## toy, tiny" in comparisons and "Toy score: over the units rated for both A and B." in comparisons
    (row,) = [line for line in comparisons.splitlines() if line.startswith("| spd | ar |")]
    quality_a, quality_b, difference = [c.strip() for c in row.strip("|").split("|")][4:7]
    assert re.fullmatch(r"\d+\.\d\d", quality_a) and re.fullmatch(r"\d+\.\d\d", quality_b)  # paired_digits=2
    assert re.fullmatch(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]", difference), difference
    assert (results / "plots" / "speed_vs_quality_toy.png").is_file()
