"""What this CPU is, from /proc/cpuinfo: its model and flags. The kernels torch and ggml run
depend on them (a record's fingerprint, mtad/job/records.py; ggml's CPU variant, mtad/runners/llamacpp.py)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpuinfo(key: str) -> str | None:
    """The first ``key`` line of /proc/cpuinfo (its value), None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return cpuinfo("model name") or platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    """This CPU's flags (empty where there is no /proc/cpuinfo)."""
    return set((cpuinfo("flags") or "").split())


def machine_cores() -> int:
    """The cores this process may run on (its affinity; a container may hold fewer than the CPU has)."""
    return len(os.sched_getaffinity(0))
