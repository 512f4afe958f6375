"""Which runs may be compared, and what is computed across them: speed-ups against a reference
decoder, the decoder parameters that vary, and which code versions are current. One definition,
used by the sweep table printed after ``run.py -m`` (``mtad/job/sweep_table.py``) and by
``make table`` (``mtad/report/``).
"""

from __future__ import annotations

import json

from mtad.job.records import LATE_FIELDS

# Runs that agree on all of these differ only in their decoder: their tokens/s can be divided.
# The sweep is among them because speed is only comparable on one machine in one sitting.
COMPARABLE = ("sweep", "pair", "task", "seed", "max_new_tokens", "sampling")


def comparable_key(run: dict) -> str:
    return json.dumps([run.get(k) for k in COMPARABLE], sort_keys=True)


def speedup(run: dict, runs: list[dict], reference: str) -> float | None:
    """tokens/s of ``run`` over that of the latest ``reference``-decoder run comparable with it
    (outside a sweep only the run itself qualifies: AR against AR is 1)."""
    key = comparable_key(run)
    matches = [r for r in runs if r["decoder"] == reference and comparable_key(r) == key
               and (run.get("sweep") or r is run)]
    if not matches or not matches[-1]["tokens_per_second"]:
        return None
    return run["tokens_per_second"] / matches[-1]["tokens_per_second"]


def varying_params(runs: list[dict]) -> list[dict]:
    """Per run, its decoder parameters whose values differ between runs of the same decoder on the
    same task and pair (the parameters a reader needs to tell the rows apart)."""
    values: dict[tuple, set[str]] = {}
    for run in runs:
        for key, value in run["decoder_params"].items():
            values.setdefault((run["task"], run["pair"], run["decoder"], key), set()).add(json.dumps(value))
    return [{k: v for k, v in run["decoder_params"].items()
             if len(values[(run["task"], run["pair"], run["decoder"], k)]) > 1} for run in runs]


def params_label(params: dict) -> str:
    """``gamma=4, tau=0.3``; ``-`` for none."""
    return ", ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in params.items()) or "-"


# The parts of the code whose versions make a run, compared in this order.
VERSIONED = ("harness", "task", "decoder", "backend", "sampling", "quant", "matmul")


def version_key(run: dict) -> tuple[int, ...]:
    """The code versions that made a run, oldest first when sorted. A version a record lacks is
    the one ``LATE_FIELDS`` says such runs were made at (a part added later), else 0 (records
    from before versions existed)."""
    versions = run.get("versions") or {}
    return tuple(int(versions.get(part, LATE_FIELDS.get(f"versions.{part}", 0))) for part in VERSIONED)


def current_versions(runs: list[dict]) -> tuple[list[dict], int]:
    """The runs made by the newest code versions among ``runs`` (all of one table cell), and how
    many older ones were left out: a cell never mixes numbers of two versions of the code."""
    if not runs:
        return [], 0
    newest = max(version_key(r) for r in runs)
    current = [r for r in runs if version_key(r) == newest]
    return current, len(runs) - len(current)
