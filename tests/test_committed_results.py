"""The committed results (results/README.md): `make table` on a fresh clone rebuilds the committed
results/table.md, results/comparisons.md and the report page byte for byte from the committed store."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REBUILT = ["results/table.md", "results/comparisons.md", "results/report/index.html"]


def tracked(path: str) -> bool:
    return bool(subprocess.run(["git", "ls-files", path], cwd=ROOT, capture_output=True, text=True).stdout.strip())


def test_make_table_on_a_fresh_clone_rebuilds_the_committed_files_byte_for_byte(tmp_path):
    if not tracked("results/table.md"):
        pytest.skip("no results committed yet")
    assert tracked("results/runs.jsonl") and tracked("results/samples"), "a committed table needs its store"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True, timeout=300)
    committed = {path: (clone / path).read_bytes() for path in REBUILT}
    env = {**os.environ, "MPLBACKEND": "Agg"}
    made = subprocess.run([sys.executable, "-m", "mtad.report", "--results", "results"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, made.stderr[-2000:]
    for path in REBUILT:
        assert (clone / path).read_bytes() == committed[path], f"{path} differs from what make table rebuilds"
