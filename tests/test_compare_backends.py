"""scripts/compare_backends.py on a hand-made speed store: block efficiency of one decoder on two
pairs (backends) over the prompts both ran, its paired ratio, the forward shares, and the
refusal when the pairs share no cell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mtad.job.records import append_line
from tasks.catalogue import TASKS

from helpers import ROOT, load_script

SCRIPT = ROOT / "scripts" / "compare_backends.py"
compare_backends = load_script("compare_backends")


def add_run(results: Path, run_id: str, pair: str, decoder: str, calls: list[int], forward: float, wall: float,
            ids=range(4)):
    """A HumanEval run of 10 tokens per prompt in ``calls[i]`` target calls, ``forward`` of its
    ``wall`` seconds in forwards."""
    ids = list(ids)
    for i, n in zip(ids, calls):
        sample = {"run_id": run_id, "id": f"HumanEval/{i}#0", "new_tokens": list(range(10)),
                  "stats": {"wall_seconds": wall / len(ids), "target_calls": n}, "verdict": {"passed": True}}
        sample["scores"] = TASKS["humaneval"].scores(sample["verdict"])
        append_line(results / "samples" / f"{run_id}.jsonl", sample)
    append_line(results / "runs.jsonl", {
        "run_id": run_id, "sweep": "s", "task": "humaneval", "pair": pair, "decoder": decoder, "decoder_params": {},
        "seed": 42, "sampling": {"temperature": 1.0}, "max_new_tokens": 128, "tokens_per_second": 1.0,
        "block_efficiency": 1.0, "acceptance_per_position": [], "examples": len(ids),
        "totals": {"new_tokens": 10 * len(ids), "wall_seconds": wall, "target_seconds": forward * 0.75,
                   "draft_seconds": forward * 0.25},
        "quality": {"pass@1": 1.0}, "metric": TASKS["humaneval"].metric.to_record(),
        "versions": {"harness": 2, "task": 1, "decoder": 1}})


def test_block_efficiency_ratio_over_shared_prompts_and_forward_shares(tmp_path):
    (tmp_path / "samples").mkdir()
    add_run(tmp_path, "a-spd", "p+static", "spd", [2, 2, 5, 5], forward=9.0, wall=10.0)
    # B needs twice the calls on every prompt both ran; its fifth prompt A never ran
    add_run(tmp_path, "b-spd", "p+llamacpp", "spd", [4, 4, 10, 10, 1], forward=4.5, wall=5.0, ids=range(5))
    add_run(tmp_path, "a-ar", "p+static", "ar", [10] * 4, forward=1.0, wall=1.0)  # no B run: no row
    (row,) = compare_backends.compare(tmp_path, "p+static", "p+llamacpp")
    assert (row["task"], row["decoder"], row["prompts"]) == ("humaneval", "spd", 4)
    assert row["block_efficiency_a"] == pytest.approx(40 / 14) and row["block_efficiency_b"] == pytest.approx(40 / 28)
    assert row["b_over_a"] == pytest.approx(0.5) and row["ci"] == pytest.approx((0.5, 0.5))  # the same on every draw
    assert row["forward_share_a"] == pytest.approx(0.9) and row["forward_share_b"] == pytest.approx(0.9)


def test_a_ratio_that_varies_by_prompt_gets_an_interval_around_it(tmp_path):
    (tmp_path / "samples").mkdir()
    add_run(tmp_path, "a", "p+static", "spd", [2, 2, 2, 2], forward=1.0, wall=2.0)
    add_run(tmp_path, "b", "p+llamacpp", "spd", [1, 2, 2, 4], forward=1.0, wall=4.0)
    (row,) = compare_backends.compare(tmp_path, "p+static", "p+llamacpp")
    low, high = row["ci"]
    assert row["b_over_a"] == pytest.approx(8 / 9) and low < row["b_over_a"] < high  # 40/9 over 40/8
    assert row["forward_share_b"] == pytest.approx(0.25)


def test_pairs_with_no_common_cell_are_refused_in_one_line(tmp_path):
    (tmp_path / "samples").mkdir()
    add_run(tmp_path, "a", "p+static", "spd", [2] * 4, forward=1.0, wall=1.0)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--store", str(tmp_path), "--a", "p+static", "--b", "other"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines() == [
        f"error: {tmp_path} holds no cell that both p+static and other ran"]
