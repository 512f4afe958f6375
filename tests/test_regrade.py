"""Regrading MT-Bench from the stored judge replies (``python -m mtad.job.regrade``): every
committed rating lies on the 1-10 scale and is what ``parse_rating`` reads from its reply, and the
regrade puts a changed reading everywhere a rating is kept, once (a second run writes nothing)."""

import json
import shutil
from pathlib import Path

from mtad.job.records import latest_runs, read_lines, run_id
from mtad.job.regrade import regrade
from mtad.judging.fastchat import parse_rating
from tasks.mtbench import judgment_path

RESULTS = Path(__file__).resolve().parent.parent / "results"
MTBENCH_JOBS = RESULTS / "jobs" / "mtbench"


def on_scale(rating) -> bool:
    return rating is None or 1 <= rating <= 10


def test_no_committed_rating_lies_off_the_1_to_10_scale():
    judgments = [j for path in sorted(RESULTS.glob("jobs/**/model_judgment/*_single.jsonl")) for j in read_lines(path)]
    assert judgments
    for j in judgments:
        assert j["score"] == -1 or 1 <= j["score"] <= 10, (j["question_id"], j["turn"], j["score"])
        assert j["score"] == (parse_rating(j["judgment"]) or -1)  # the stored score is the reply's reading today
    graded = [run for run in latest_runs(RESULTS).values() if run["task"] == "mtbench" and "judge" in run["quality"]]
    assert graded
    for run in graded:
        quality = run["quality"]
        assert all(1 <= v <= 10 for k, v in quality.items() if k.startswith("mt_bench_") and v is not None)
        assert quality["judge_off_scale"] <= quality["judge_missing"]
        samples = read_lines(RESULTS / "samples" / f"{run['run_id']}.jsonl")
        rated = [r for s in samples for r in s["verdict"]["ratings"]]
        assert all(on_scale(r) for s in samples for r in s["scores"]) and all(on_scale(r) for r in rated)
        assert sum(r is None for r in rated) == quality["judge_missing"]


def copy_store(tmp_path: Path) -> Path:
    """The committed store's MT-Bench part: its summaries, per-example records and job folders."""
    copy = tmp_path / "results"
    (copy / "samples").mkdir(parents=True)
    shutil.copyfile(RESULTS / "runs.jsonl", copy / "runs.jsonl")
    for run in latest_runs(RESULTS).values():
        if run["task"] == "mtbench":
            shutil.copyfile(RESULTS / "samples" / f"{run['run_id']}.jsonl", copy / "samples" / f"{run['run_id']}.jsonl")
    shutil.copytree(MTBENCH_JOBS, copy / "jobs" / "mtbench")
    return copy


def files(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_regrade_puts_a_reply_read_again_everywhere_once_and_keeps_run_ids(tmp_path):
    results = copy_store(tmp_path)
    before = files(results)
    assert regrade(results) == []  # the committed store is regraded already
    assert files(results) == before

    # a judgment read as the old parser did: arr[0] in quoted code taken for a rating of 0
    job = results / "jobs" / "mtbench" / "0"
    summary = json.loads((job / "summary.json").read_text())
    path = judgment_path(job, summary["quality"]["judge"])
    lines = path.read_text().splitlines()
    k, first = next((k, json.loads(line)) for k, line in enumerate(lines) if json.loads(line)["score"] > 0)
    lines[k] = json.dumps({**first, "judgment": "Reference: B = [0] * (n + 1)\nno verdict", "score": 0.0})
    path.write_text("".join(line + "\n" for line in lines))
    samples_path = results / "samples" / f"{summary['run_id']}.jsonl"
    samples = read_lines(samples_path)
    for s in samples:
        if s["verdict"]["question_id"] == first["question_id"]:
            s["verdict"]["ratings"][first["turn"] - 1] = s["scores"][first["turn"] - 1] = 0.0
    samples_path.write_text("".join(json.dumps(s) + "\n" for s in samples))

    rewritten = regrade(results)
    assert set(rewritten) == {path, samples_path, job / "summary.json", results / "runs.jsonl"}
    assert json.loads(path.read_text().splitlines()[k])["score"] == -1
    (example,) = [s for s in read_lines(samples_path) if s["verdict"]["question_id"] == first["question_id"]]
    assert example["verdict"]["ratings"][first["turn"] - 1] is None and example["scores"][first["turn"] - 1] is None
    current = latest_runs(results)[summary["run_id"]]
    assert current["quality"]["judge_missing"] == summary["quality"]["judge_missing"] + 1
    assert current["quality"]["judge_off_scale"] == 0  # no [[N]] at all: missing, not off the scale
    assert current == json.loads((job / "summary.json").read_text())
    assert all(run_id(r["config"], r["versions"]) == r["run_id"] for r in read_lines(results / "runs.jsonl"))

    after = files(results)
    assert regrade(results) == [] and files(results) == after  # idempotent
