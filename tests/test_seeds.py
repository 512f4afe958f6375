"""Generator seeds (issue 36): every turn of every example draws from its own random stream, so
runs with neighbouring seeds are independent samples, not shifted copies of one another."""

from mtad.job import harness
from mtad.job.harness import stream_seed
from mtad.job.interleave import interleave
from mtad.job.records import read_lines

from test_interleave import COMMON

IDS = [f"HumanEval/{i}" for i in range(164)]


def test_neighbouring_seeds_share_no_stream():
    s42, s43 = ([stream_seed(seed, i, 0) for i in IDS] for seed in (42, 43))
    assert not set(s42) & set(s43)
    assert not set(s42) & {stream_seed(42, i, 1) for i in IDS}  # the second turn: other streams again
    assert len(set(s42)) == len(IDS) and all(0 <= s < 2**63 for s in s42)
    assert s42 == [stream_seed(42, i, 0) for i in IDS]  # deterministic
    # negative control: the old rule (example i: seed + i) gave seed 43 seed 42's streams, shifted by one
    old42, old43 = ([seed + i for i in range(len(IDS))] for seed in (42, 43))
    assert old43[:-1] == old42[1:] and len(set(old42) & set(old43)) == len(IDS) - 1


def test_each_example_is_generated_with_its_hashed_seed(tmp_path, monkeypatch):
    seeds, generate = [], harness.generate

    def spy(*args, seed, **kwargs):
        seeds.append(seed)
        return generate(*args, seed=seed, **kwargs)

    monkeypatch.setattr(harness, "generate", spy)
    (summary,) = interleave(["ar"], [*COMMON, "seed=43", "warmup=0", f"results_dir={tmp_path}"], "s")
    records = read_lines(tmp_path / "samples" / f"{summary['run_id']}.jsonl")
    assert len(records) == 4 and seeds == [stream_seed(43, r["id"], 0) for r in records]
    assert summary["versions"]["harness"] == harness.HARNESS_VERSION == 2
