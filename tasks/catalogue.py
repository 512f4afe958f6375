"""The task catalogue: the one place that imports the tasks and names them.

A task's ``version`` goes into the id of every run on it (``mtad/job/records.py``): bump it in the
same commit as any change to its prompts, its data or how it scores.
"""

from __future__ import annotations

import dataclasses

from mtad.errors import UserError, refuse_unknown
from mtad.registry import by_name, register
from tasks.base import Task
from tasks.humaneval import HumanEval
from tasks.mtbench import MTBench
from tasks.spider import Spider
from tasks.synthetic import Synthetic

TASKS: dict[str, type[Task]] = by_name("task", [HumanEval, Spider, MTBench, Synthetic])


def register_task(cls: type[Task]) -> type[Task]:
    """Add a task defined elsewhere (a test's, a user's) to the catalogue, so configs can name it;
    a name already taken is refused. Usable as a class decorator."""
    return register("task", TASKS, cls)


def build_task(name: str, **params) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})")
    refuse_unknown(f"task {name!r}", params, [f.name for f in dataclasses.fields(TASKS[name]) if f.init])
    return TASKS[name](**params)
