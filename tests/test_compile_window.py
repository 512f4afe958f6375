"""A compile never lands in a timed or metered window (issue 36): an example whose generation
compiled a shape first met after the warm-up counts for quality, not for speed or energy."""

import json

import pytest

from mtad.job.interleave import interleave
from mtad.job.records import read_lines
from mtad.report.rows import _example

from test_fingerprint import crashed_run
from test_interleave import COMMON


def test_an_example_that_compiled_is_left_out_of_speed_and_energy(tmp_path, monkeypatch):
    samples = crashed_run(tmp_path, monkeypatch)
    records = read_lines(samples)
    records[0]["stats"]["compile_seconds"] = 1.5  # as a static runner records a bucket's first call
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    (summary,) = interleave(["ar"], [*COMMON, "warmup=0", f"results_dir={tmp_path}"], "s")
    done = read_lines(samples)
    timed = [r for r in done if not r["stats"]["compile_seconds"]]
    assert summary["compiled_examples"] == 1 and len(timed) == 3
    expected = sum(len(r["new_tokens"]) for r in timed) / sum(r["stats"]["wall_seconds"] for r in timed)
    assert summary["tokens_per_second"] == pytest.approx(expected, rel=1e-9)
    # negative control: over every example it would differ
    every = sum(len(r["new_tokens"]) for r in done) / sum(r["stats"]["wall_seconds"] for r in done)
    assert every != pytest.approx(expected, rel=1e-9)
    assert summary["totals"]["new_tokens"] == sum(len(r["new_tokens"]) for r in done)  # block efficiency: all
    # the tables read the same: no seconds, joules or timed tokens for the compiled example
    compiled = _example(summary, done[0])
    assert all(compiled[k] != compiled[k] for k in ("seconds", "joules", "timed_tokens"))  # NaN
    assert _example(summary, done[1])["seconds"] == done[1]["stats"]["wall_seconds"]
