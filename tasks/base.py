"""The task interface. Tasks know nothing of decoders: they give prompts and score outputs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mtad.errors import UserError

TASKS: dict[str, type["Task"]] = {}


@dataclass
class Example:
    id: str
    prompt_ids: list[int]
    data: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    name: ClassVar[str]

    @abstractmethod
    def examples(self, engine) -> list[Example]:
        """The prompts, tokenised for this model pair."""

    def score(self, example: Example, tokens: list[int], engine) -> dict[str, Any]:
        """A verdict for one output (empty when the task has no quality metric)."""
        return {}

    def quality(self, verdicts: list[dict[str, Any]]) -> dict[str, float]:
        """Aggregate quality over all verdicts (empty when the task has no quality metric)."""
        return {}


def register(cls):
    TASKS[cls.name] = cls
    return cls


def build_task(name: str, **params) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})")
    return TASKS[name](**params)
