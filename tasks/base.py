"""The task interface. Tasks know nothing of decoders: they give prompts and score outputs."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from mtad.ranges import check_ranges
from mtad.runners.pair import PairInfo


def shared_data(folder: str) -> str:
    """A data set's default folder: ``$MTAD_DATA/<folder>``, else ``../shared/data/<folder>``
    (the same rule as the ``data_dir`` lines of conf/task/*.yaml)."""
    return os.path.join(os.environ.get("MTAD_DATA", "../shared/data"), folder)


@dataclass(frozen=True)
class Metric:
    """A task's quality measure as the reports show it, stated once on the task class
    (``Task.metric``). The harness copies it into every run summary (``metric``), so ``make table``
    reads everything about a task's quality from the records and names no task itself."""
    key: str                      # the run summary's quality key a table cell's value comes from
    title: str                    # the table's name for the measure
    factor: float = 1.0           # summary value x factor = the paper's unit, the unit of ``Task.scores``
    solved_or_not: bool = False   # each example is solved (score > 0) or not (0): McNemar, who-solves-what plots
    paired_digits: int = 1        # decimals of quality values and differences in comparisons.md
    # (summary quality key, format of its value) shown after the title, e.g. ("database_mode", "{} DBs");
    # a cell shows its runs' distinct values joined by '+'
    labels: tuple[tuple[str, str], ...] = ()
    note: str = ""                # the table's legend; ``{key}`` of a label: its values in the table, joined by ', '
    paired_note: str = ""         # the legend of comparisons.md

    def to_record(self) -> dict[str, Any]:
        """The metric as records carry it: plain JSON values (lists for tuples)."""
        return {**asdict(self), "labels": [list(label) for label in self.labels]}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Metric:
        """The metric a record carries (JSON has turned its tuples into lists)."""
        return cls(**{**record, "labels": tuple(tuple(label) for label in record.get("labels", ()))})


def mean_score(scores: list[float | None]) -> float | None:
    """One example's quality: the mean of its rated scores (None when none is rated)."""
    rated = [s for s in scores if s is not None]
    return sum(rated) / len(rated) if rated else None


def spread(items: list, n: int | None, stratum: Callable[[Any], Any] | None = None) -> list:
    """``n`` of ``items`` spread over them, in their order (all of them when ``n`` is None or not
    smaller): round-robin over strata (``stratum(item)``: a task's databases or categories, each
    taken in its order), or, without strata, evenly spaced (item i * len // n: every fourth of 164
    for n = 41). A speed sitting on the first n examples measures one corner of a task (issue 36:
    Spider's first 40 questions all ask one database)."""
    if n is None or n >= len(items):
        return list(items)
    if stratum is None:
        return [items[i * len(items) // n] for i in range(n)]
    groups: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(stratum(item), []).append(i)
    rounds = (group[rank] for rank in range(max(map(len, groups.values()))) for group in groups.values()
              if rank < len(group))
    return [items[i] for i in sorted(list(rounds)[:n])]


@dataclass
class Example:
    id: str
    prompt_ids: list[int]
    data: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    name: ClassVar[str]
    version: ClassVar[int]  # bumped with any change to prompts, data or scoring (tasks/catalogue.py)
    graded_by_judge: ClassVar[bool] = False  # whether ``judge`` is implemented
    metric: ClassVar[Metric | None] = None  # the quality measure the tables show; None: the task measures speed only

    def __post_init__(self):
        # each setting's range is stated beside its default (mtad/ranges.py), checked before the
        # task reads any data; a sub-class with checks or loading of its own calls this first
        check_ranges(self, "task")

    @classmethod
    def scores(cls, verdict: dict[str, Any]) -> list[float | None]:
        """One example's contribution to ``metric``, from its verdict alone (so records can be
        rescored without the task's data): a score in the paper's unit per unit the task rates
        (MT-Bench: per turn), None for a unit left unrated. A cell's quality interval is over the
        mean of all rated units (for MT-Bench FastChat's turn-weighted score); a paired comparison
        uses the units rated on both sides. Recorded beside each verdict (``scores``)."""
        return []

    def preflight(self) -> None:
        """Raise ``UserError`` if this task cannot run on this machine (called before the models
        load, so nothing is generated for nothing)."""

    @abstractmethod
    def examples(self, pair: PairInfo) -> list[Example]:
        """The prompts, tokenised for this model pair."""

    def converse(self, example: Example, generate_turn: Callable[[list[int]], Any], pair: PairInfo) -> list[list[int]]:
        """Run the example's conversation; ``generate_turn(prompt_ids)`` generates one reply and
        returns its new tokens. Single-turn tasks generate once from ``example.prompt_ids``;
        multi-turn tasks build each turn's prompt from the replies before it."""
        return [generate_turn(example.prompt_ids)]

    def stop_rule(self, example: Example, pair: PairInfo) -> Callable[[list[int]], bool] | None:
        """A test on a reply's new token ids that holds once no continuation can change the
        example's score, so that generation stops there (``generate(settled=...)``), as the
        stop sequences of common harnesses do; it must stay true once true. None (default):
        generate to a stop token or ``max_new_tokens``."""
        return None

    def score(self, example: Example, replies: list[list[int]], pair: PairInfo) -> dict[str, Any]:
        """A verdict for one example from the tokens of its replies, one list per turn (empty when
        the task has no quality metric)."""
        return {}

    def quality(self, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
        """Aggregate quality over all verdicts (empty when the task has no quality metric)."""
        return {}

    def write_outputs(self, out_dir: Path, verdicts: list[dict[str, Any]], model_id: str) -> None:
        """Task-specific files in the job folder (e.g. answers in another tool's format)."""

    def judge(self, out_dir: Path, judge) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Quality from an LLM judge over the answers saved in ``out_dir`` (tasks that set
        ``graded_by_judge``), and per example id the fields the judge adds to its verdict."""
        raise NotImplementedError
