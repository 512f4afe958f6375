"""``python -m mtad.job.regrade RESULTS_DIR [--jobs DIR ...]``: read every stored MT-Bench judge
reply again with today's ``parse_rating`` and put the ratings it gives wherever they are kept. No
judge is asked: what changes is only how replies are read (issue 36: ``[[N]]`` with 1 <= N <= 10,
no ``[N]`` fallback).

For each MT-Bench run of the store whose job folder is found (a folder under RESULTS_DIR, or under
a ``--jobs`` folder, whose ``summary.json`` has the run's id; never the ``output_dir`` a record
names, which may be another checkout):
- every judgment's ``score`` in ``model_judgment/*_single.jsonl`` becomes the reply's rating
  (``-1``: missing, FastChat's marker);
- from the judgments of the judge its summary names: each example's ``ratings`` and ``scores``
  (the store's ``samples/<run_id>.jsonl``, and the job's ``samples.jsonl`` where it is kept), and
  the summary's ``mt_bench_*``, ``judge_missing`` and ``judge_off_scale`` (the job's
  ``summary.json`` rewritten and a new record appended to the store, as ``judge.py`` does).
Only what changes is written, so a second run writes nothing. No config or version is touched,
so no run id changes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtad.errors import UserError, one_line_errors
from mtad.job.migrate import rewrite_lines
from mtad.job.records import STORE, latest_runs, read_lines, update_summary, update_verdicts
from mtad.judging.fastchat import parse_rating
from tasks.mtbench import JUDGMENTS, MTBench, judgment_path

JUDGE_KEYS = ("judge_missing", "judge_off_scale", "judge")  # with every mt_bench_* key: what grading sets


def rescored(judgment: dict) -> dict:
    """A FastChat judgment with the ``score`` its reply gives today (unchanged when the same)."""
    score = parse_rating(judgment["judgment"])
    score = -1 if score is None else score
    return judgment if score == judgment["score"] else {**judgment, "score": score}


def job_folders(roots: list[Path]) -> dict[str, Path]:
    """run id -> the first job folder (one holding ``summary.json``) found under ``roots`` for it."""
    folders: dict[str, Path] = {}
    for root in roots:
        for path in sorted(Path(root).glob("**/summary.json")):
            try:
                run_id = json.loads(path.read_text())["run_id"]
            except (OSError, ValueError, KeyError, TypeError):  # not a job's summary
                continue
            folders.setdefault(run_id, path.parent)
    return folders


def regrade(results_dir: Path, job_roots: list[Path] = ()) -> list[Path]:
    """Regrade one results store's MT-Bench runs from their stored replies; the files it rewrote
    (the store's ``runs.jsonl`` when it appended to it)."""
    results_dir = Path(results_dir)
    if not (results_dir / STORE).is_file():
        raise UserError(f"no results store at {results_dir / STORE}")
    folders = job_folders([results_dir, *job_roots])
    rewritten: list[Path] = []
    for run_id, run in latest_runs(results_dir).items():
        if run["task"] != MTBench.name:
            continue
        folder = folders.get(run_id)
        if folder is None:
            print(f"run {run_id}: no job folder under {', '.join(map(str, [results_dir, *job_roots]))}; left as it is")
            continue
        for path in sorted((folder / JUDGMENTS).glob("*_single.jsonl")):
            if rewrite_lines(path, rescored):
                rewritten.append(path)
        judge = run["quality"].get("judge")
        if judge is None:  # not graded yet
            continue
        path = judgment_path(folder, judge)
        if not path.is_file():
            print(f"run {run_id}: graded by {judge!r}, whose judgments {path} are missing; left as it is")
            continue
        judgments = sorted({(j["question_id"], j["turn"]): j for j in read_lines(path)}.values(),  # as judge_answers
                           key=lambda j: (j["question_id"], j["turn"]))
        store_samples = results_dir / "samples" / f"{run_id}.jsonl"
        samples = read_lines(store_samples)
        questions = {s["verdict"]["question_id"]: {"category": s["verdict"]["category"]} for s in samples}
        judged, verdicts = MTBench.graded(judgments, questions, judge)
        stale = [s for s in samples if s["id"] in verdicts and
                 ({k: s["verdict"].get(k) for k in verdicts[s["id"]]} != verdicts[s["id"]]
                  or s.get("scores") != MTBench.scores({**s["verdict"], **verdicts[s["id"]]}))]
        if stale:
            update_verdicts(folder, verdicts, MTBench.scores, results_dir)
            rewritten.append(store_samples)
        kept = {k: v for k, v in run["quality"].items() if not (k.startswith("mt_bench_") or k in JUDGE_KEYS)}
        quality = {**kept, **judged}
        if quality != run["quality"]:
            update_summary(folder, {"quality": quality}, results_dir)
            rewritten += [folder / "summary.json", results_dir / STORE]
    return list(dict.fromkeys(rewritten))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="results stores (folders holding runs.jsonl)")
    parser.add_argument("--jobs", nargs="*", type=Path, default=[],
                        help="more folders to look for job folders in (e.g. multirun/), besides each store")
    args = parser.parse_args()
    with one_line_errors():
        for results in args.results:
            rewritten = regrade(results, args.jobs)
            print(f"{results}: {len(rewritten)} file(s) rewritten")


if __name__ == "__main__":
    main()
