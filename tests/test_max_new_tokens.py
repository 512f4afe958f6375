"""Every run summary counts the examples and generations (turns) cut at max_new_tokens
(``hit_max_new_tokens``): counted by ``Job.finish``, added to older stores by ``mtad.job.migrate``,
and noted under the table where a task's share exceeds 10%."""

import json
from pathlib import Path

from mtad.job.interleave import interleave
from mtad.job.metrics import hit_max_new_tokens
from mtad.job.migrate import migrate
from mtad.job.records import read_lines, run_id
from mtad.report.formats import capped_note
from tasks.base import shared_data

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / shared_data("mt_bench")
COMMON = ["pair=tiny", "max_new_tokens=3", "meter=none", "meter_idle_seconds=0", "warmup=0"]


def test_the_last_generation_is_read_from_its_stop_reason_and_earlier_turns_from_their_length():
    records = [
        {"new_tokens": [1] * 4, "stop_reason": "max_new_tokens"},                           # hit
        {"new_tokens": [1] * 4, "stop_reason": "stop_token"},                               # stop token at the cap
        {"new_tokens": [1] * 2, "stop_reason": "stop_token"},
        {"new_tokens": [1] * 6, "turn_tokens": [4, 2], "stop_reason": "stop_token"},        # turn 1 hit
        {"new_tokens": [1] * 8, "turn_tokens": [4, 4], "stop_reason": "max_new_tokens"},    # both turns hit
        {"new_tokens": [1] * 5, "turn_tokens": [1, 4], "stop_reason": "settled"},           # settled at the cap
    ]
    assert hit_max_new_tokens(records, 4) == {"examples": 3, "of_examples": 6, "generations": 4, "of_generations": 9}
    # records since issue 36 say why each turn stopped: a first turn ended by a stop token right at
    # the cap is no hit (negative control: read from its length, it would be)
    told = {"new_tokens": [1] * 8, "turn_tokens": [4, 4], "turn_stop_reasons": ["stop_token", "max_new_tokens"],
            "stop_reason": "max_new_tokens"}
    assert hit_max_new_tokens([told], 4)["generations"] == 1
    assert hit_max_new_tokens([{k: v for k, v in told.items() if k != "turn_stop_reasons"}], 4)["generations"] == 2
    assert hit_max_new_tokens([], 4) == {"examples": 0, "of_examples": 0, "generations": 0, "of_generations": 0}


def _counted(results: Path, summary: dict) -> dict:
    """The count recomputed here from the run's stored records, turn by turn."""
    records = read_lines(results / "samples" / f"{summary['run_id']}.jsonl")
    turns = [r.get("turn_tokens") or [len(r["new_tokens"])] for r in records]
    hits = [sum(reason == "max_new_tokens" for reason in r["turn_stop_reasons"]) if "turn_stop_reasons" in r
            else sum(n == summary["max_new_tokens"] for n in t[:-1]) + (r["stop_reason"] == "max_new_tokens")
            for r, t in zip(records, turns)]
    assert all("turn_stop_reasons" in r for r, t in zip(records, turns) if len(t) > 1)
    return {"examples": sum(h > 0 for h in hits), "of_examples": len(records), "generations": sum(hits),
            "of_generations": sum(map(len, turns))}


def test_a_tiny_job_that_hits_the_cap_counts_it_and_migrate_adds_the_count_to_an_older_store(tmp_path):
    results = tmp_path / "results"
    single = interleave(["ar", "spd"], [*COMMON, "task=synthetic", "task.limit=4", f"results_dir={results}"], "one")
    multi = interleave(["ar"], [*COMMON, "task=mtbench", "task.limit=2", f"task.data_dir={DATA}",
                                f"results_dir={results}"], "two")
    for summary in single + multi:
        count = summary["hit_max_new_tokens"]
        assert count == _counted(results, summary) and count["examples"] > 0  # 3 tokens: the toy pair rarely stops
        assert count["of_examples"] == summary["examples"]
        assert list(summary)[list(summary).index("resumed_examples") + 1] == "hit_max_new_tokens"
    assert multi[0]["hit_max_new_tokens"]["of_generations"] == 4  # two questions x two turns

    # a store written before the count: migrate adds it to every summary, where the harness puts it
    store = results / "runs.jsonl"
    made = store.read_text()
    jobs = sorted((results / "jobs").glob("*/*/summary.json"))
    written = {path: path.read_text() for path in jobs}
    old = lambda summary: {k: v for k, v in summary.items() if k != "hit_max_new_tokens"}  # noqa: E731
    store.write_text("".join(json.dumps(old(r), default=str) + "\n" for r in read_lines(store)))
    for path in jobs:
        path.write_text(json.dumps(old(json.loads(path.read_text())), indent=2, default=str))
    assert len(migrate(results)) == 1 + len(jobs)
    assert store.read_text() == made and all(path.read_text() == text for path, text in written.items())
    assert migrate(results) == []  # idempotent
    assert all(run_id(r["config"], r["versions"]) == r["run_id"] for r in read_lines(store))


def test_the_table_notes_a_task_whose_share_of_cut_answers_exceeds_ten_percent():
    def run(task, examples, generations, of_generations=None):
        return {"task": task, "max_new_tokens": 128,
                "hit_max_new_tokens": {"examples": examples, "of_examples": 80, "generations": generations,
                                       "of_generations": of_generations or 80}}

    note = capped_note([run("mtbench", 60, 100, 160), run("mtbench", 64, 110, 160), run("spider", 8, 8),
                        {"task": "humaneval", "max_new_tokens": 128}])
    assert note == ["Cut at max_new_tokens (128): mtbench, 78% of examples (124/160 over 2 runs) in at least one "
                    "turn, 66% of turns (210/320); those answers are scored as cut."]
    assert capped_note([run("spider", 8, 8)]) == []  # 10% exactly: no line
    assert capped_note([run("spider", 9, 9)]) == ["Cut at max_new_tokens (128): spider, 11% of examples (9/80 over "
                                                  "1 run); those answers are scored as cut."]
