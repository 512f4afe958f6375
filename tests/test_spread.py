"""Speed sittings that span their tasks (issue 36): ``task.sample`` takes N of a task's examples
spread over it, not the first N."""

from collections import Counter

import pytest

from mtad.job.records import LATE_FIELDS
from tasks.base import spread
from tasks.catalogue import build_task
from tasks.mtbench import MTBench

from test_max_new_tokens import DATA


def test_spread_is_evenly_spaced_or_round_robin_over_strata():
    assert spread(list(range(164)), 41) == list(range(0, 164, 4))  # every fourth
    assert spread(list(range(10)), None) == spread(list(range(10)), 10) == list(range(10))
    items = ["a1", "a2", "a3", "b1", "c1", "c2"]
    assert spread(items, 4, lambda x: x[0]) == ["a1", "a2", "b1", "c1"]  # a, b, c, then a again; in order
    assert spread(items, 2, lambda x: x[0]) == ["a1", "b1"]
    # negative control: the first N are not spread
    assert items[:4] != spread(items, 4, lambda x: x[0])


def test_the_speed_sittings_reach_across_each_task():
    humaneval = spread(list(range(164)), 41)
    assert max(humaneval) > 100 and len(humaneval) == 41
    spider = build_task("spider", limit=None, sample=40, data_dir=str(DATA.parent / "spider"))
    databases = Counter(q["db_id"] for q in spider.questions)
    assert len(spider.questions) == 40 and len(databases) >= 5 and max(databases.values()) <= 2
    first = build_task("spider", limit=40, data_dir=str(DATA.parent / "spider"))
    assert len({q["db_id"] for q in first.questions}) == 1  # what the old sitting measured: one database
    mtbench = MTBench(data_dir=str(DATA), sample=16)
    assert Counter(q["category"] for q in mtbench.questions.values()) == {c: 2 for c in (
        "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")}


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_a_bad_sample_is_refused(bad):
    with pytest.raises(ValueError, match="sample"):
        build_task("humaneval", sample=bad)


def test_committed_runs_keep_their_ids():
    assert LATE_FIELDS["config.task.sample"] is None
