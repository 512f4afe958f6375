"""Run records: what each job leaves behind, and the results store that tables are built from.

In a job's output folder:
- ``config.yaml``: the resolved config;
- ``samples.jsonl``: one line per example, appended and flushed as each one finishes;
- ``summary.json``: the job's totals, written atomically (temporary file, then rename).
Each summary is also appended as one line to ``<results_dir>/runs.jsonl``, the results store,
and each example's record to ``<results_dir>/samples/<run_id>.jsonl``. That is what makes a job
resumable: rerun with the same config and the same code versions (same run id), it skips the
examples already recorded there, and a run already in the store is not run again; after a
version bump of any code that makes it (harness, decoder, task, backend, sampling, quantization,
matmuls) it is a new run. A line cut short by a kill is dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mtad.errors import UserError
from mtad.paths import REPO
from mtad.runners.cpu import cpu_flags, cpu_model

if TYPE_CHECKING:
    from mtad.runners.load import PairConfig

STORE = "runs.jsonl"


# Config fields and code versions that appeared after runs were first recorded, with the value
# that reproduces what those runs did. At that value they are left out of the run id, so adding
# one changes no earlier run's id (the committed store keeps resuming); any other value enters it.
# Paths: "config.<group>.<field>" or "versions.<part>".
LATE_FIELDS: dict[str, object] = {
    # every conf/pair YAML lists every PairConfig field since issue 34; before, these two were
    # absent (the dataclass defaults: the whole draft head, tiny weights seed 0)
    "config.pair.draft_head_rows": None,
    "config.pair.seed": 0,
    # task.sample (issue 36): every committed run took all of its task.limit
    "config.task.sample": None,
    # pair.threads (issue 38): llama.cpp's threads; no committed run set it
    "config.pair.threads": None,
    # versions of the backend and of the shared code that generates (mtad/runners/catalogue.py,
    # mtad/job/harness.py): every committed run was made at version 1 of each
    "versions.backend": 1,
    "versions.sampling": 1,
    "versions.quant": 1,
    "versions.matmul": 1,
}


def run_id(config: dict, versions: dict[str, int]) -> str:
    """Stable id of a run from its resolved config (seed included) and the versions of the code
    that makes it (harness, decoder, task, ...): the same command with the same code is recognised;
    after a version bump it is a new run, which resumes nothing of the old one. The judge, the
    logger, the resume switches and where results go are left out: they change nothing that is
    generated; so are ``LATE_FIELDS`` at their original values."""
    generation = {k: v for k, v in config.items()
                  if k not in ("judge", "logger", "resume", "resume_elsewhere", "results_dir")}
    identity = json.loads(json.dumps({"config": generation, "versions": versions}, default=str))  # a copy to edit
    for path, original in LATE_FIELDS.items():
        *parents, leaf = path.split(".")
        node = identity
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and node[leaf] == original:
            del node[leaf]
    canonical = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_line(path: Path, record: dict) -> None:
    """Append one JSON line durably, first cutting off a line that a kill left unfinished."""
    with open(path, "a+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                f.seek(0)
                f.truncate(f.read().rfind(b"\n") + 1)
        f.write((json.dumps(record, default=str) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def read_lines(path: Path) -> list[dict]:
    """The complete JSON lines of a file (none if it is missing); an unfinished last line is ignored."""
    if not Path(path).exists():
        return []
    text = Path(path).read_text()
    lines = text.split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]  # text after the last newline is unfinished


def latest_runs(results_dir: Path) -> dict[str, dict]:
    """The current summary of every run in the store (the last record of each run id)."""
    return {record["run_id"]: record for record in read_lines(Path(results_dir) / STORE)}


def writable_dir(path: Path, what: str) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=path)
        probe.close()
    except OSError as err:
        raise UserError(f"{what} {path} is not writable: {err.strerror}") from None
    return path


def environment() -> dict[str, Any]:
    """Versions and hardware, for every summary."""
    import torch
    import transformers

    from mtad import __version__

    env = {
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "mtad": __version__, "git_commit": _git_commit(), "platform": platform.platform(),
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "gpu": None,
    }
    if torch.cuda.is_available():
        env["gpu"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        env["cuda"] = torch.version.cuda
    return env


# /proc/cpuinfo flags that change which kernels torch runs for our dtypes (bf16, int8 and float32 GEMMs)
NUMERICS_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile", "amx_bf16",
                  "amx_int8")


def fingerprint(pair: PairConfig) -> dict[str, Any]:
    """What decides a run's numerics besides its config: the CPU model, the ISA torch dispatches on
    and the flags that change its bf16/int8 kernels, the GPU, torch's version, and the pair's
    backend, device and dtype as resolved on this machine. The same config on two fingerprints may
    emit other tokens (issue 36: an AVX2 EPYC and an avx512_bf16 Xeon gave the same MT-Bench
    config's SpD answers alike on 0 of 10 questions), so every example record carries it and a run
    does not resume on another one (``Job``)."""
    import torch

    device = pair.resolved_device()
    if pair.backend == "llamacpp":  # llama.cpp's build and CPU variant decide its numerics, not torch's
        from mtad.runners.llamacpp import build_tag

        extra = {"llama_cpp": build_tag(), "dtype": "gguf"}  # the file's own types
    else:
        extra = {}
    return {"cpu": cpu_model(), "isa": torch.backends.cpu.get_cpu_capability(),
            "cpu_flags": [flag for flag in NUMERICS_FLAGS if flag in cpu_flags()],
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__, "backend": pair.backend, "device": device.type,
            "dtype": str(pair.resolved_dtype()).removeprefix("torch."), **extra}


def machine(fp: dict | None) -> str:
    """A fingerprint in a few words, for errors and tables."""
    if fp is None:
        return "unknown machine"
    return ", ".join(str(v) for v in (fp["gpu"] or fp["cpu"], fp["isa"], f"torch {fp['torch']}", fp["dtype"]))


def _git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def timed_example(record: dict) -> bool:
    """Whether an example's generation counts for speed and energy: not when a forward in it
    compiled a shape first met after the warm-up. Its compile seconds leave its wall time, but the
    energy meter cannot leave them out, and a fresh graph's first replays run cold (issue 36)."""
    return not record["stats"].get("compile_seconds")


class JobRecorder:
    """Writes one job's records as it runs, and knows what an earlier try of the same run left.

    ``done`` maps example ids to the records already in the store; ``finished`` is the run's
    summary if it completed before. With ``resume=False`` both are ignored: the run starts over.
    """

    def __init__(self, out_dir: Path, results_dir: Path, config: dict, versions: dict[str, int], resume: bool = True):
        self.out_dir = writable_dir(out_dir, "output folder")
        self.results_dir = writable_dir(results_dir, "results folder")
        self.config = config
        self.versions = versions
        self.run_id = run_id(config, versions)
        self.store_samples = writable_dir(self.results_dir / "samples", "results folder") / f"{self.run_id}.jsonl"
        if not resume:
            self.store_samples.unlink(missing_ok=True)
        self.finished = latest_runs(self.results_dir).get(self.run_id) if resume else None
        self.done = {record["id"]: record for record in read_lines(self.store_samples)}
        write_atomic(self.out_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        self.samples_path = self.out_dir / "samples.jsonl"  # this job folder gets the complete list too
        write_atomic(self.samples_path, "".join(json.dumps(r, default=str) + "\n" for r in self.done.values()))

    def rescore(self, scores, only_missing: bool = False) -> None:
        """Set each recorded example's ``scores`` to ``scores(verdict)``, in the store and in this
        job folder (files rewritten atomically, only when something changes)."""
        changed = False
        for record in self.done.values():
            if not (only_missing and "scores" in record):
                new = scores(record.get("verdict", {}))
                changed |= record.get("scores", object()) != new
                record["scores"] = new
        if changed:
            for path in (self.store_samples, self.samples_path):
                write_atomic(path, "".join(json.dumps(r, default=str) + "\n" for r in self.done.values()))

    def sample(self, record: dict) -> None:
        record = {"run_id": self.run_id, **record}
        append_line(self.store_samples, record)
        append_line(self.samples_path, record)
        self.done[record["id"]] = record

    def finish(self, summary: dict) -> dict:
        summary = {"run_id": self.run_id, "versions": self.versions,
                   "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "output_dir": str(self.out_dir), **summary, "environment": environment(), "config": self.config}
        write_atomic(self.out_dir / "summary.json", json.dumps(summary, indent=2, default=str))
        append_line(self.results_dir / STORE, summary)
        return summary


def update_verdicts(job_dir: Path, changes: dict[str, dict], scores=None, results_dir: Path | None = None) -> None:
    """Merge ``changes[example id]`` into those examples' verdicts, in the job folder's
    ``samples.jsonl`` and in the results store's records of its run (each file rewritten
    atomically): a judge grading saved answers later puts its per-example ratings where the
    tables read them. ``scores`` (the task's ``Task.scores``) rescores each changed verdict.
    ``results_dir``: the store (default: the one the job's config names)."""
    job_dir = Path(job_dir)
    summary = json.loads((job_dir / "summary.json").read_text())
    store = Path(results_dir or summary["config"]["results_dir"]) / "samples" / f"{summary['run_id']}.jsonl"
    for path in (job_dir / "samples.jsonl", store):
        if not path.is_file():  # a store moved away, a job folder from before per-example records
            continue
        records = read_lines(path)
        for record in records:
            record["verdict"] = {**record.get("verdict", {}), **changes.get(record["id"], {})}
            if scores is not None:
                record["scores"] = scores(record["verdict"])
        write_atomic(path, "".join(json.dumps(r, default=str) + "\n" for r in records))


def update_summary(job_dir: Path, changes: dict, results_dir: Path | None = None) -> dict:
    """Rewrite a job's summary with ``changes`` (atomically) and append the new version to the
    results store (``results_dir``, default: the one the job's config names): the last record
    of a run id is the current one."""
    job_dir = Path(job_dir)
    summary = {**json.loads((job_dir / "summary.json").read_text()), **changes,
               "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_atomic(job_dir / "summary.json", json.dumps(summary, indent=2, default=str))
    append_line(Path(results_dir or summary["config"]["results_dir"]) / STORE, summary)
    return summary
