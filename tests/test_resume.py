"""Crash safety: a sweep killed (SIGKILL) at random points and rerun ends with exactly the records
of an uninterrupted sweep: nothing lost, nothing duplicated, nothing finished computed again."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from mtad.job.records import append_line, read_lines

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ["-m", "pair=tiny", "task=synthetic", "task.limit=12", "decoder=ar,spd,mtad", "max_new_tokens=24"]


def command(results: Path):
    env = {**os.environ, "MTAD_RESULTS": str(results), "HF_HUB_OFFLINE": "1"}
    return [sys.executable, "run.py", *SWEEP, f"hydra.sweep.dir={results / 'sweep'}"], dict(cwd=ROOT, env=env)


def store(results: Path) -> tuple[list[dict], dict[str, list[dict]]]:
    runs = read_lines(results / "runs.jsonl")
    samples = {p.stem: read_lines(p) for p in sorted((results / "samples").glob("*.jsonl"))}
    return runs, samples


def sample_count(results: Path) -> int:
    return sum(len(s) for s in store(results)[1].values())


def test_partial_last_line_is_ignored_then_cut_before_the_next_append(tmp_path):
    path = tmp_path / "store.jsonl"
    append_line(path, {"a": 1})
    with open(path, "a") as f:
        f.write('{"a": 2, "unfini')  # what a kill in the middle of a write leaves
    assert read_lines(path) == [{"a": 1}]
    append_line(path, {"a": 3})
    assert read_lines(path) == [{"a": 1}, {"a": 3}] and path.read_text().count("\n") == 2


def test_sweep_killed_at_random_points_resumes_without_loss_or_duplicates(tmp_path):
    args, kwargs = command(tmp_path / "reference")
    assert subprocess.run(args, capture_output=True, timeout=600, **kwargs).returncode == 0
    reference_runs, reference_samples = store(tmp_path / "reference")
    assert len(reference_runs) == 3 and all(len(s) == 12 for s in reference_samples.values())

    killed = tmp_path / "killed"
    args, kwargs = command(killed)
    rng = random.Random(1)
    partial_seen = False
    for _ in range(4):
        recorded = sample_count(killed)
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                **kwargs)
        target = recorded + rng.randint(1, 20)  # kill once this many examples are recorded
        deadline = time.monotonic() + 120
        while sample_count(killed) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # this try had little left to do and finished first
            pass
        proc.wait()
        partial_seen |= any(0 < len(s) < 12 for s in store(killed)[1].values())
    assert partial_seen, "no kill landed inside a job: the test did not exercise resuming"
    finished_before = {r["run_id"] for r in store(killed)[0]}
    recorded_before = {run_id: len(s) for run_id, s in store(killed)[1].items()}

    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs, samples = store(killed)
    assert sorted(r["run_id"] for r in runs) == sorted(r["run_id"] for r in reference_runs)  # once each
    for run in runs:
        if run["run_id"] not in finished_before:  # finished runs are not run again; the others pick up
            assert run["resumed_examples"] == recorded_before.get(run["run_id"], 0)
    for run_id, reference in reference_samples.items():
        got = samples[run_id]
        assert [s["id"] for s in got] == [s["id"] for s in reference]              # none lost, none twice
        assert [s["new_tokens"] for s in got] == [s["new_tokens"] for s in reference]  # same results
    for job in (killed / "sweep").glob("*/samples.jsonl"):
        assert len(read_lines(job)) == 12
    summaries = {r["run_id"]: r for r in runs}
    for reference in reference_runs:
        assert summaries[reference["run_id"]]["totals"]["new_tokens"] == reference["totals"]["new_tokens"]
    assert json.loads((killed / "sweep" / "0" / "summary.json").read_text())["run_id"] in summaries
