"""Run ids: the committed store's runs keep theirs, whatever fields and versions were added since."""

from pathlib import Path

import pytest

from mtad.job import records
from mtad.job.records import read_lines, run_id

RESULTS = Path(__file__).resolve().parent.parent / "results"


@pytest.mark.parametrize("store", ["runs.jsonl", "speed/runs.jsonl"])
def test_every_committed_run_keeps_its_id(store):
    runs = read_lines(RESULTS / store)
    assert runs
    for run in runs:
        assert run_id(run["config"], run["versions"]) == run["run_id"], run["output_dir"]


def test_a_late_field_enters_the_id_only_away_from_its_original_value(monkeypatch):
    monkeypatch.setattr(records, "LATE_FIELDS", {"config.pair.seed": 0, "versions.sampling": 1})
    config = {"pair": {"name": "tiny"}, "seed": 1}
    before = run_id(config, {"decoder": 1})
    assert run_id({"pair": {"name": "tiny", "seed": 0}, "seed": 1}, {"decoder": 1, "sampling": 1}) == before
    assert run_id({"pair": {"name": "tiny", "seed": 3}, "seed": 1}, {"decoder": 1}) != before
    assert run_id(config, {"decoder": 1, "sampling": 2}) != before
    # the root seed is another field than pair.seed: never left out
    assert run_id({"pair": {"name": "tiny"}, "seed": 0}, {"decoder": 1}) != before
