"""Interleaved runs (mtad/job/interleave.py): the same runs and records as run.py makes, decoders taking
turns example by example in rotated order, resumable after a crash."""

import pytest

from mtad.errors import UserError
from mtad.job.harness import Job, run_jobs
from mtad.job.interleave import decoder_overrides, interleave, job_configs
from mtad.job.sweep_table import UNINTERLEAVED, format_table
from mtad.job.records import read_lines

from test_cli import run_cli

COMMON = ["pair=tiny", "task=synthetic", "task.limit=4", "max_new_tokens=12", "meter=none", "meter_idle_seconds=0"]


def test_interleaved_runs_equal_run_py_runs_and_take_turns_in_rotated_order(tmp_path, monkeypatch):
    order = []
    run = Job.run

    def logged(job, pair, i, example, meter):
        order.append((job.decoder.name, i))
        return run(job, pair, i, example, meter)

    monkeypatch.setattr(Job, "run", logged)
    summaries = interleave(["ar", "spd", "mtad:tau=0.3"], [*COMMON, f"results_dir={tmp_path / 'il'}"], "s")
    assert order == [("ar", 0), ("spd", 0), ("mtad", 0), ("spd", 1), ("mtad", 1), ("ar", 1),
                     ("mtad", 2), ("ar", 2), ("spd", 2), ("ar", 3), ("spd", 3), ("mtad", 3)]
    assert [s["decoder"] for s in summaries] == ["ar", "spd", "mtad"] and summaries[2]["decoder_params"]["tau"] == 0.3
    assert len({s["sweep"] for s in summaries}) == 1 and all(s["examples"] == 4 for s in summaries)
    # one sitting: the closing table divides their tokens/s
    assert len({s["sitting"] for s in summaries}) == 1
    table = format_table(summaries)
    assert "| 1.00x |" in table and table.count("x |") == 3 and UNINTERLEAVED not in table
    # the same runs as if made one after another: no speed-up, and the line that says why
    apart = [{**s, "sitting": str(k)} for k, s in enumerate(summaries)]
    table = format_table(apart)
    assert "x |" not in table and table.endswith(UNINTERLEAVED)
    assert UNINTERLEAVED not in format_table(apart[:1])  # a job alone compares with nothing

    proc = run_cli(tmp_path, "-m", *COMMON, "decoder=spd")  # the same run, made by run.py
    assert proc.returncode == 0, proc.stderr[-2000:]
    (alone,) = read_lines(tmp_path / "results" / "runs.jsonl")
    assert alone["run_id"] == summaries[1]["run_id"]
    tokens = [[r["new_tokens"] for r in read_lines(root / "samples" / f"{alone['run_id']}.jsonl")]
              for root in (tmp_path / "il", tmp_path / "results")]
    assert tokens[0] == tokens[1]


def test_an_interrupted_interleaving_resumes_without_loss_or_duplicates(tmp_path, monkeypatch):
    overrides = [*COMMON, f"results_dir={tmp_path}"]
    run, calls = Job.run, []

    def crashing(job, pair, i, example, meter):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(i)
        return run(job, pair, i, example, meter)

    monkeypatch.setattr(Job, "run", crashing)
    with pytest.raises(KeyboardInterrupt):
        interleave(["ar", "spd"], overrides, "s")
    monkeypatch.setattr(Job, "run", run)
    summaries = interleave(["ar", "spd"], overrides, "s")
    assert [s["resumed_examples"] for s in summaries] == [3, 2]
    for s in summaries:
        ids = [r["id"] for r in read_lines(tmp_path / "samples" / f"{s['run_id']}.jsonl")]
        assert sorted(ids) == sorted(set(ids)) and len(ids) == 4
    again = interleave(["ar", "spd"], overrides, "s")  # finished: served from the store
    assert [s["run_id"] for s in again] == [s["run_id"] for s in summaries]
    assert len(read_lines(tmp_path / "runs.jsonl")) == 2


def test_decoder_specs():
    assert decoder_overrides("mtad:tau=0.3:width=2") == ["decoder=mtad", "decoder.tau=0.3", "decoder.width=2"]
    with pytest.raises(UserError, match="name\\[:key=value"):
        decoder_overrides("mtad:tau")


def test_jobs_taking_turns_must_share_one_pair(tmp_path):
    configs = job_configs(["ar"], [*COMMON, f"results_dir={tmp_path}"]) + \
        job_configs(["spd"], [*COMMON, f"results_dir={tmp_path}", "pair.seed=1"])
    with pytest.raises(UserError, match="jobs taking turns share one pair"):
        run_jobs([Job(config, tmp_path / str(k)) for k, config in enumerate(configs)])
    assert not list(tmp_path.glob("samples/*.jsonl"))  # refused before generating


def test_an_outside_yardstick_takes_its_turn_after_the_decoders_on_each_example(tmp_path, monkeypatch):
    # run_jobs' between step (scripts/bench_speed.py runs llama-speculative there): after every job's
    # turn on example i, with the example's records already written, and never inside a job's timing
    order, run = [], Job.run

    def logged(job, pair, i, example, meter):
        order.append((job.decoder.name, i))
        return run(job, pair, i, example, meter)

    monkeypatch.setattr(Job, "run", logged)
    configs = job_configs(["ar", "spd"], [*COMMON, f"results_dir={tmp_path}"])
    jobs = [Job(config, tmp_path / str(k)) for k, config in enumerate(configs)]

    def between(i):
        assert all(job.examples[i].id in job.recorder.done for job in jobs)
        order.append(("between", i))

    run_jobs(jobs, between=between)
    assert order == [("ar", 0), ("spd", 0), ("between", 0), ("spd", 1), ("ar", 1), ("between", 1),
                     ("ar", 2), ("spd", 2), ("between", 2), ("spd", 3), ("ar", 3), ("between", 3)]
