"""The Hydra CLI end to end on the tiny pair: sweeps, records, the results store, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from baselines.spd import SpD

from mtad.job.sweep_table import UNINTERLEAVED
from tasks.base import shared_data

ROOT = Path(__file__).resolve().parent.parent


def run_cli(tmp_path, *overrides):
    env = {**os.environ, "MTAD_RESULTS": str(tmp_path / "results"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "run.py", *overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_multirun_sweep_writes_records_and_prints_one_table(tmp_path):
    proc = run_cli(tmp_path, "-m", "pair=tiny", "task=humaneval", "task.limit=10", "decoder=ar,spd,mtad",
                   "max_new_tokens=24")
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = sorted((tmp_path / "sweep").glob("*/summary.json"))
    assert len(jobs) == 3
    summaries = [json.loads(p.read_text()) for p in jobs]
    assert [s["decoder"] for s in summaries] == ["ar", "spd", "mtad"]
    for job, s in zip(jobs, summaries):
        samples = [json.loads(line) for line in (job.parent / "samples.jsonl").read_text().splitlines()]
        assert [x["id"] for x in samples] == [f"HumanEval/{i}#0" for i in range(10)]
        assert sum(len(x["new_tokens"]) for x in samples) == s["totals"]["new_tokens"]
        assert all("passed" in x["verdict"] and x["verdict"]["sandbox"] == "bwrap" for x in samples)
        assert "pass@1" in s["quality"] and s["examples"] == 10 and s["sweep"] == str(tmp_path / "sweep")
        assert s["environment"]["torch"] and s["config"]["decoder"]["name"] == s["decoder"]
        assert (job.parent / "config.yaml").exists()
        assert s["energy_source"] in ("none", "rapl")  # a CPU machine: its RAPL counters if readable, else nothing
        if s["energy_source"] == "none":
            assert s["energy_joules"] is s["joules_per_token"] is None and all(x["energy_joules"] is None for x in samples)
    assert summaries[2]["decoder_params"] == {"gamma": 4, "width": 4, "tau": 0.5, "replacement": True,
                                              "accept_rule": "longest", "beam_norm": "joint"}
    store = [json.loads(line) for line in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()]
    assert [r["run_id"] for r in store] == [s["run_id"] for s in summaries]
    assert len({r["run_id"] for r in store}) == 3
    table = proc.stdout
    assert "| decoder" in table and table.count("| tiny ") == 3
    # the jobs ran one after another: no speed-up, and one line says why
    assert "x |" not in table and UNINTERLEAVED in table


def test_same_config_is_recognised_not_rerun_and_overrides_reach_the_decoder(tmp_path):
    outputs = []
    for tau in ("0.3", "0.3", "0.7"):
        proc = run_cli(tmp_path, "pair=tiny", "task=synthetic", "task.limit=1", "decoder=mtad", f"decoder.tau={tau}",
                       "max_new_tokens=4")
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.append(proc.stdout)
    store = [json.loads(line) for line in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()]
    assert [r["decoder_params"]["tau"] for r in store] == [0.3, 0.7]
    assert store[0]["run_id"] != store[1]["run_id"]
    assert f"run {store[0]['run_id']} finished before" in outputs[1] and "finished before" not in outputs[2]
    assert run_cli(tmp_path, "pair=tiny", "task=synthetic", "task.limit=1", "decoder=mtad", "decoder.tau=0.3",
                   "max_new_tokens=4", "resume=false").returncode == 0
    store = [json.loads(line) for line in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()]
    assert [r["run_id"] for r in store] == [store[0]["run_id"], store[1]["run_id"], store[0]["run_id"]]


def run_bumped(tmp_path, *overrides):
    """run.py with SpD's version bumped by one, as a commit that changes SpD would."""
    bump = ("import runpy, sys\nfrom baselines.spd import SpD\nSpD.version += 1\n"
            "runpy.run_path('run.py', run_name='__main__')\n")
    env = {**os.environ, "MTAD_RESULTS": str(tmp_path / "results"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", bump, *overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_version_bump_runs_the_same_command_again(tmp_path):
    command = ["-m", "pair=tiny", "task=synthetic", "task.limit=2", "decoder=ar,spd,mtad", "max_new_tokens=4"]
    first, second = run_cli(tmp_path, *command), run_cli(tmp_path, *command)
    assert first.returncode == second.returncode == 0, second.stderr[-2000:]
    assert "finished before" not in first.stdout and second.stdout.count("finished before") == 3
    bumped = run_bumped(tmp_path, *command)
    assert bumped.returncode == 0, bumped.stderr[-2000:]
    assert bumped.stdout.count("finished before") == 2  # ar and mtad; spd generates again
    store = [json.loads(line) for line in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()]
    spd = [r for r in store if r["decoder"] == "spd"]
    assert [r["versions"]["decoder"] for r in spd] == [SpD.version, SpD.version + 1]
    assert spd[0]["run_id"] != spd[1]["run_id"]
    assert all(r["versions"]["harness"] >= 1 and r["versions"]["task"] >= 1 for r in store)


def test_a_resumed_run_never_mixes_examples_of_two_versions(tmp_path):
    command = ["pair=tiny", "task=synthetic", "task.limit=3", "decoder=spd", "max_new_tokens=4"]
    assert run_cli(tmp_path, *command).returncode == 0
    results = tmp_path / "results"
    (old,) = [json.loads(line) for line in (results / "runs.jsonl").read_text().splitlines()]
    old_samples = results / "samples" / f"{old['run_id']}.jsonl"

    def interrupt():  # as a kill after the first example would leave it: one record, no summary
        (results / "runs.jsonl").write_text("")
        old_samples.write_text(old_samples.read_text().splitlines(keepends=True)[0])

    interrupt()
    same = run_cli(tmp_path, *command)  # control: the same code resumes the recorded example
    assert same.returncode == 0 and json.loads((results / "runs.jsonl").read_text())["resumed_examples"] == 1
    interrupt()
    kept = old_samples.read_text()
    bumped = run_bumped(tmp_path, *command)
    assert bumped.returncode == 0, bumped.stderr[-2000:]
    (new,) = [json.loads(line) for line in (results / "runs.jsonl").read_text().splitlines()]
    assert new["run_id"] != old["run_id"] and new["versions"]["decoder"] == SpD.version + 1 and new["resumed_examples"] == 0
    records = [json.loads(line) for line in (results / "samples" / f"{new['run_id']}.jsonl").read_text().splitlines()]
    assert len(records) == 3 and {r["run_id"] for r in records} == {new["run_id"]}
    assert old_samples.read_text() == kept  # the old version's record stays its own


@pytest.mark.parametrize("overrides, message", [
    (["task.limit=0"], "error: task.limit must be an integer >= 1 or null (null: all 164), got 0"),
    (["pair.draft_quant=int4"], "error: pair.draft_quant must be one of none, int8, got 'int4'"),
    (["task=humaneval", "task.sandbox=docker"], "error: task.sandbox must be one of bwrap, process, got 'docker'"),
    (["decoder.gamma=0"], "error: decoder.gamma must be an integer >= 1, got 0"),
    (["decoder=nope"], "Could not find 'decoder/nope'"),
    (["sampling.top_p=1.5"], "error: sampling.top_p must be a finite number in (0, 1] (1: off), got 1.5"),
    (["+pair.draft_head_row=64"], "error: pair has no key 'draft_head_row' (known: attn_implementation, backend,"),
    (["task=synthetic", "judge=openai", "judge.model=stub"],
     "error: task 'synthetic' is not graded by an LLM judge; leave judge=none"),
])
def test_bad_input_gives_a_clear_error(tmp_path, overrides, message):
    proc = run_cli(tmp_path, "pair=tiny", *overrides)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results" / "runs.jsonl").exists()
    assert not list((tmp_path / "results").glob("samples/*.jsonl"))  # refused before generating


@pytest.mark.parametrize("overrides, message", [
    # issue 39: these ran, and the first recorded pass@1 0.000 as a real result
    (["task=humaneval", "task.timeout=0"], "error: task.timeout must be a finite number > 0 (wall seconds per program), got 0"),
    (["task=synthetic", "warmup=-1"], "error: warmup must be an integer >= 0 (untimed generations before measuring), got -1"),
])
def test_a_value_outside_its_range_stops_the_job_before_any_work(tmp_path, overrides, message):
    proc = run_cli(tmp_path, "pair=tiny", *overrides)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [message], proc.stderr[-2000:]
    assert not (tmp_path / "results").exists()  # the results store was never opened: no runs.jsonl, no samples/


def test_humaneval_without_bwrap_stops_in_one_line_before_loading_models(tmp_path):
    env = {**os.environ, "MTAD_RESULTS": str(tmp_path / "results"), "PATH": str(tmp_path)}  # no bwrap on PATH
    # A target that cannot load: refused for the sandbox first proves the models were never touched.
    proc = subprocess.run([sys.executable, "run.py", "pair=qwen2.5-coder", f"pair.target={tmp_path / 'none'}",
                           "task=humaneval", f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "bubblewrap" in error[0] and "task.sandbox=process" in error[0], proc.stderr[-2000:]
    assert not list((tmp_path / "results").glob("samples/*.jsonl"))


def test_a_missing_local_model_folder_is_one_line(tmp_path):
    proc = run_cli(tmp_path, "pair=qwen2.5-coder", f"pair.target={tmp_path / 'none'}", "task=synthetic")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"error: model folder {tmp_path / 'none'} does not exist" in proc.stderr


def test_unwritable_results_folder(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    env_results = blocked / "results"
    proc = subprocess.run([sys.executable, "run.py", "pair=tiny", "task=synthetic", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, env={**os.environ, "MTAD_RESULTS": str(env_results)}, capture_output=True, text=True)
    assert proc.returncode == 2 and "error: results folder" in proc.stderr and "is not writable" in proc.stderr


def test_spider_sweep_on_the_tiny_pair_scores_on_synthetic_databases(tmp_path, monkeypatch):
    monkeypatch.setenv("MTAD_HOME", str(tmp_path / "home"))
    data = ROOT / shared_data("spider")  # the run resolves it from the repository root too
    proc = run_cli(tmp_path, "-m", "pair=tiny", "task=spider", "task.limit=3", f"task.data_dir={data}",
                   "decoder=ar,mtad", "max_new_tokens=8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/summary.json"))]
    assert [s["decoder"] for s in summaries] == ["ar", "mtad"]
    for s in summaries:
        assert s["quality"]["database_mode"] == "synthetic" and s["quality"]["gold_failed"] == 0
        assert s["quality"]["execution_accuracy"] == 0.0  # random bytes are no SQL
    assert len(list((tmp_path / "home" / "spider_synthetic" / "concert_singer").glob("*.sqlite"))) == 3
    assert "execution_accuracy" in proc.stdout and "synthetic" in proc.stdout


def test_two_job_sweep_through_the_submitit_local_launcher(tmp_path):
    proc = run_cli(tmp_path, "-m", "pair=tiny", "task=synthetic", "task.limit=2", "decoder=ar,spd", "max_new_tokens=4",
                   "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/summary.json"))]
    assert [s["decoder"] for s in summaries] == ["ar", "spd"]
    assert (tmp_path / "sweep" / ".submitit").is_dir()  # the jobs went through submitit
    assert "| tiny | synthetic | spd " in proc.stdout


def test_wandb_logger_writes_an_offline_run_per_job(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    proc = run_cli(tmp_path, "-m", "pair=tiny", "task=synthetic", "task.limit=2", "decoder=ar,mtad", "max_new_tokens=4",
                   "logger=wandb")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for job in ("0", "1"):
        (run,) = (tmp_path / "sweep" / job / "wandb").glob("offline-run-*")
        log = next(run.glob("run-*.wandb")).read_bytes()
        assert b"tokens_per_second" in log and b"quality/target_ppl" in log
        assert (b"acceptance_per_position/1" in log) == (job == "1")  # ar drafts nothing
        (table,) = (run / "files" / "media" / "table").glob("samples_*.table.json")
        assert len(json.loads(table.read_text())["data"]) == 2
    store = [json.loads(line) for line in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()]
    assert len(store) == 2  # the local store stays the record
