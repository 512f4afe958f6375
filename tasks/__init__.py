"""Task registry: a task turns a dataset into prompts and scores generated tokens."""

from __future__ import annotations

from tasks.base import TASKS, Example, Task, build_task  # noqa: F401
from tasks import humaneval, mtbench, spider, synthetic  # noqa: F401  (registers)
