"""Machine fingerprints (issue 36): every example record says what decided its numerics, and a run
does not resume on another machine unless asked to, in which case its summary lists both."""

import json

import pytest

from mtad.errors import UserError
from mtad.job.harness import Job
from mtad.job.interleave import interleave
from mtad.job.records import NUMERICS_FLAGS, fingerprint, read_lines
from mtad.runners.load import pair_config

from test_interleave import COMMON


class Crash(Exception):
    pass


def crashed_run(tmp_path, monkeypatch) -> list:
    """A run killed after two of its four examples: its samples file, as the store holds it."""
    run, calls = Job.run, []

    def crash_after_two(job, *args):
        if len(calls) == 2:
            raise Crash
        calls.append(1)
        return run(job, *args)

    monkeypatch.setattr(Job, "run", crash_after_two)
    with pytest.raises(Crash):
        interleave(["ar"], [*COMMON, "warmup=0", f"results_dir={tmp_path}"], "s")
    monkeypatch.setattr(Job, "run", run)
    (samples,) = (tmp_path / "samples").glob("*.jsonl")
    return samples


def test_fingerprint_names_what_decides_the_numerics():
    fp = fingerprint(pair_config("tiny", dtype="float32"))
    assert set(fp) == {"cpu", "isa", "cpu_flags", "gpu", "torch", "backend", "device", "dtype"}
    assert fp["device"] == "cpu" and fp["dtype"] == "float32" and fp["gpu"] is None and fp["backend"] == "eager"
    assert set(fp["cpu_flags"]) <= set(NUMERICS_FLAGS) and fp["isa"]
    assert fingerprint(pair_config("tiny", dtype="bfloat16"))["dtype"] == "bfloat16"


def test_resume_on_the_same_machine_keeps_one_fingerprint(tmp_path, monkeypatch):
    samples = crashed_run(tmp_path, monkeypatch)
    assert len(read_lines(samples)) == 2 and all("fingerprint" in r for r in read_lines(samples))
    (summary,) = interleave(["ar"], [*COMMON, "warmup=0", f"results_dir={tmp_path}"], "s")
    assert summary["resumed_examples"] == 2 and len(summary["fingerprints"]) == 1


def test_resume_on_another_machine_is_refused_unless_asked(tmp_path, monkeypatch):
    samples = crashed_run(tmp_path, monkeypatch)
    records = read_lines(samples)
    records[0]["fingerprint"] = {**records[0]["fingerprint"], "cpu": "Other CPU", "isa": "AVX2"}
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(UserError, match=r"1 of its 2 recorded examples come from another machine \(Other CPU, AVX2"):
        interleave(["ar"], [*COMMON, "warmup=0", f"results_dir={tmp_path}"], "s")
    assert not (tmp_path / "runs.jsonl").exists()  # refused before anything ran
    (summary,) = interleave(["ar"], [*COMMON, "warmup=0", "resume_elsewhere=true", f"results_dir={tmp_path}"], "s")
    assert summary["examples"] == 4 and [fp["cpu"] for fp in summary["fingerprints"]][0] == "Other CPU"
    assert len(summary["fingerprints"]) == 2


def test_the_table_marks_cells_whose_runs_mix_machines():
    from pathlib import Path

    from mtad.report.formats import MIXED, mixed
    from mtad.report.rows import machines
    a, b = {"cpu": "CPU A", "gpu": None}, {"cpu": "CPU B", "gpu": None}
    assert machines([{"fingerprints": [a]}, {"fingerprints": [b]}]) == ["CPU A", "CPU B"]
    assert machines([{"fingerprints": [a, b]}]) == ["CPU A", "CPU B"]  # one run resumed elsewhere
    assert mixed({"machines": machines([{"fingerprints": [a]}, {"fingerprints": [b]}])})
    # negative control: an old run (its summary's machine only) and a new one on the same CPU
    assert not mixed({"machines": machines([{"environment": {"cpu": "CPU A"}}, {"fingerprints": [a]}])})
    # the committed HumanEval seeds 42-43 ran on a Xeon, seed 44 on an EPYC
    table = (Path(__file__).resolve().parent.parent / "results" / "table.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| humaneval | qwen2.5-coder") and "| ar " in line)
    assert f"| 3 {MIXED}" in row and "AMD EPYC + Intel(R) Xeon(R) Processor" in table
