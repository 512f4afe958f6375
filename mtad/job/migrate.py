"""``python -m mtad.job.migrate RESULTS_DIR [...]``: bring a results store written before tasks
declared their metric, or before summaries counted the answers cut at ``max_new_tokens``, up to date.

It adds, where missing, only fields that today's code derives from what is stored: ``metric`` (the
task class's) and ``hit_max_new_tokens`` (from the run's per-example records, as ``Job.finish``
counts it) to every run summary (``runs.jsonl``, and each ``summary.json`` under ``jobs/``), and
``scores`` to every per-example record (``samples/<run_id>.jsonl``). No existing field changes, so
no run id or number changes either; a record that has the field already is left as it is. Each file is
rewritten atomically, and only when something was added: rerunning it changes nothing.
Per-example records of a run with no summary yet (an unfinished run) are left to the job,
which scores them when it resumes (``JobRecorder.rescore``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtad.errors import UserError, one_line_errors
from mtad.job.metrics import hit_max_new_tokens
from mtad.job.records import STORE, read_lines, write_atomic
from tasks.base import Task
from tasks.catalogue import TASKS


def _task(name: str) -> type[Task]:
    if name not in TASKS:
        raise UserError(f"a record names task {name!r}, which the task catalogue does not know")
    return TASKS[name]


def _metric(task: type[Task]) -> dict | None:
    return None if task.metric is None else task.metric.to_record()


def _insert_after(record: dict, anchor: str, key: str, value) -> dict:
    """``record`` with ``key: value`` right after ``anchor`` (at the end when it has no ``anchor``),
    where the harness writes it today."""
    out = {}
    for k, v in record.items():
        out[k] = v
        if k == anchor:
            out[key] = value
    out.setdefault(key, value)
    return out


def with_metric(summary: dict) -> dict:
    """A run summary with its task's ``metric`` (unchanged when it has one)."""
    if "metric" in summary:
        return summary
    return _insert_after(summary, "quality", "metric", _metric(_task(summary["task"])))


def with_hit_max_new_tokens(summary: dict, samples: list[dict]) -> dict:
    """A run summary with its ``hit_max_new_tokens`` counted from ``samples``, the run's
    per-example records (unchanged when it has the count, or when they are not all there)."""
    records = list({record["id"]: record for record in samples}.values())  # the last of an id, as a job reads them
    if "hit_max_new_tokens" in summary or len(records) != summary["examples"]:
        return summary
    return _insert_after(summary, "resumed_examples", "hit_max_new_tokens",
                         hit_max_new_tokens(records, summary["max_new_tokens"]))


def with_scores(record: dict, task: type[Task]) -> dict:
    """A per-example record with its ``scores`` (unchanged when it has them)."""
    if "scores" in record:
        return record
    return _insert_after(record, "verdict", "scores", task.scores(record.get("verdict", {})))


def rewrite_lines(path: Path, change) -> bool:
    """Apply ``change`` to each JSON line of ``path``; rewrite the file if any line changed. Text
    after the last newline (a line a kill cut short) is kept as it was."""
    text = path.read_text()
    body, _, tail = text.rpartition("\n") if "\n" in text else ("", "", text)
    lines = body.split("\n") if body else []
    changed = False
    out = []
    for line in lines:
        if not line.strip():
            out.append(line)
            continue
        record = json.loads(line)
        new = change(record)
        if new is not record:
            changed = True
            line = json.dumps(new, default=str)  # how append_line writes it
        out.append(line)
    if changed:
        write_atomic(path, "".join(line + "\n" for line in out) + tail)
    return changed


def migrate(results_dir: Path) -> list[Path]:
    """Add the missing fields to one results store; the files it rewrote."""
    results_dir = Path(results_dir)
    store = results_dir / STORE
    if not store.is_file():
        raise UserError(f"no results store at {store}")
    rewritten = []
    tasks = {run["run_id"]: _task(run["task"]) for run in read_lines(store)}  # run id -> its task class
    for path in sorted((results_dir / "samples").glob("*.jsonl")):
        task = tasks.get(path.stem)
        if task is not None and rewrite_lines(path, lambda record: with_scores(record, task)):
            rewritten.append(path)

    def complete(summary: dict) -> dict:
        new = with_metric(summary)
        if "hit_max_new_tokens" in new:
            return new
        return with_hit_max_new_tokens(new, read_lines(results_dir / "samples" / f"{new['run_id']}.jsonl"))

    if rewrite_lines(store, complete):
        rewritten.append(store)
    for path in sorted((results_dir / "jobs").glob("**/summary.json")):
        summary = json.loads(path.read_text())
        new = complete(summary)
        if new is not summary:
            write_atomic(path, json.dumps(new, indent=2, default=str))  # how JobRecorder.finish writes it
            rewritten.append(path)
    return rewritten


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="results stores (folders holding runs.jsonl)")
    args = parser.parse_args()
    with one_line_errors():
        for results in args.results:
            rewritten = migrate(results)
            print(f"{results}: {len(rewritten)} file(s) rewritten")


if __name__ == "__main__":
    main()
