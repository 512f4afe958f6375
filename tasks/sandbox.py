"""Running untrusted generated Python: one contained interpreter per program.

Generated code does anything: prints forever, forks, leaves detached children, writes files,
reads its own source. Each program therefore runs under a *sandbox* (``task.sandbox``):

- ``bwrap`` (default): bubblewrap puts the program in fresh Linux namespaces: a PID namespace
  (every process it starts dies with it), no network, a private size-limited ``/tmp`` and
  ``/dev/shm``, the rest of the file system read-only, no nested user namespaces. As root we
  start it under a fresh unprivileged uid (below).
- ``process``: the weaker fallback, opt-in only: a plain subprocess in a fresh folder, in its own
  session. The program can write wherever an unprivileged user may (``/tmp``, ``/dev/shm``), and
  those files stay; as non-root, a detached child can outlive the verdict.

As root, every program runs under its own throwaway uid (``nobody`` inside bwrap): the process
limit (RLIMIT_NPROC, counted per uid) then binds that program alone, so a fork bomb cannot starve
the verdicts running beside it, and after the verdict every process of that uid is killed.

Both apply the same rlimits (CPU time, address space, file size, processes) and the same
supervision: output is read as it comes, never more than ``Limits.output_bytes`` (a program
that writes more is killed), and one wall-clock deadline bounds the whole verdict, reading
included; nothing waits on a pipe that a leftover process may hold open.

Proof that the checks ran to the end: a trusted runner (``RUNNER``) reads a fresh random marker
and the program from a pipe, closes the pipe, writes the program to ``program.py`` and runs it;
only when the program returns does it write the marker to a second pipe. A pass needs exit
code 0 and that marker, which is in no file, argument or environment variable the program can
see. (A program that introspects the runner's own memory could still find it; the guard is
against programs that skip their checks, e.g. by ``os._exit(0)``, not against a determined
attacker with ``ctypes``.)
"""

from __future__ import annotations

import hmac
import os
import resource
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache

SANDBOXES = ("bwrap", "process")
NOBODY = 65534
# Throwaway uids, far above the ranges distributions and /etc/subuid hand out.
FRESH_UIDS = range(1_900_000_000, 2_000_000_000)
SANDBOX_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 10.0       # the whole verdict, reading included
    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30      # address space
    file_bytes: int = 1 << 20        # largest file the program may write
    processes: int = 64              # RLIMIT_NPROC, per uid: applied only under a throwaway uid (root)
    output_bytes: int = 1 << 20      # stdout + stderr; more than this kills the program
    tmp_bytes: int = 64 << 20        # bwrap: size of the private /tmp (and of /dev/shm)


@dataclass
class Outcome:
    passed: bool
    status: str          # passed | failed | timeout | output_limit | crashed
    returncode: int | None
    output: str          # tail of stdout + stderr, for diagnosis
    user: str            # who ran it: "fresh-uid" (a throwaway unprivileged uid) or "self"
    sandbox: str         # which sandbox judged it: bwrap | process


class SandboxUnavailable(RuntimeError):
    """The requested sandbox cannot run programs on this machine (the message says why)."""


# Runs inside the sandbox as ``python -I -c RUNNER <fd in> <fd proof>``. The fd numbers are not
# secret; the marker arrives only through <fd in>, which is drained and closed before the
# program's first line runs, and then lives only as a local of ``_run`` (no global, no closure):
# the program runs as a fresh ``__main__`` module, so ``import __main__`` reaches its own names.
RUNNER = """
import os, sys, types
def _run(fd_in, fd_proof):
    chunks = []
    while True:
        chunk = os.read(fd_in, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd_in)
    marker, source = b"".join(chunks).split(b"\\n", 1)
    del chunks
    path = os.path.abspath("program.py")
    with open(path, "wb") as f:
        f.write(source)
    main = types.ModuleType("__main__")
    main.__file__ = path
    sys.modules["__main__"] = main
    sys.argv = [path]
    write = os.write
    exec(compile(source, path, "exec"), main.__dict__)
    sys.stdout.flush()
    sys.stderr.flush()
    write(fd_proof, marker)
_run(int(sys.argv[1]), int(sys.argv[2]))
"""


@dataclass(frozen=True)
class _Launcher:
    sandbox: str
    python: str
    fresh_uids: bool         # root: each program under a throwaway uid; else as ourselves
    bwrap: str | None = None  # its path (bwrap sandbox)

    @property
    def user(self) -> str:
        return "fresh-uid" if self.fresh_uids else "self"

    def argv(self, limits: Limits, fd_in: int, fd_proof: int) -> list[str]:
        command = [self.python, "-I", "-c", RUNNER, str(fd_in), str(fd_proof)]
        if self.sandbox == "process":
            return command
        tmp = str(limits.tmp_bytes)
        return [self.bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                "--uid", str(NOBODY), "--gid", str(NOBODY),
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--size", tmp, "--tmpfs", "/tmp", "--size", tmp, "--tmpfs", "/dev/shm",
                "--chdir", "/tmp", "--", *command]


def run_program(program: str, limits: Limits = Limits(), sandbox: str = "bwrap") -> Outcome:
    """Run ``program`` in ``sandbox``; it passes iff it returns normally (exit code 0) after its
    last line. Raises ``SandboxUnavailable`` if that sandbox cannot run here."""
    launcher = _launcher(sandbox)
    marker = secrets.token_hex(16).encode()
    workdir = tempfile.mkdtemp(prefix="mtad-sandbox-") if sandbox == "process" else None
    try:
        return _run(launcher, marker + b"\n" + program.encode(), marker, limits, workdir)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def sandbox_error(sandbox: str) -> str | None:
    """None when ``sandbox`` can run programs here, else one line saying why not."""
    try:
        _launcher(sandbox)
    except SandboxUnavailable as err:
        return str(err)
    return None


def _run(launcher: _Launcher, payload: bytes, marker: bytes, limits: Limits, workdir: str | None) -> Outcome:
    def outcome(passed, status, returncode, output):
        return Outcome(passed, status, returncode, output, launcher.user, launcher.sandbox)

    home = workdir or "/tmp"
    uid = FRESH_UIDS.start + secrets.randbelow(len(FRESH_UIDS)) if launcher.fresh_uids else None
    if workdir is not None and uid is not None:
        os.chown(workdir, uid, NOBODY)
    in_r, in_w = os.pipe()
    proof_r, proof_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        proc = subprocess.Popen(
            launcher.argv(limits, in_r, proof_w), cwd=workdir or "/", env={**SANDBOX_ENV, "HOME": home, "TMPDIR": home},
            stdin=subprocess.DEVNULL, stdout=out_w, stderr=out_w, pass_fds=(in_r, proof_w),
            start_new_session=True, preexec_fn=_rlimits(limits, per_uid=uid is not None),
            user=uid, group=NOBODY if uid is not None else None, extra_groups=[] if uid is not None else None)
    except (OSError, subprocess.SubprocessError) as err:  # a sample that cannot start fails; the run goes on
        for fd in (in_r, in_w, proof_r, proof_w, out_r, out_w):
            os.close(fd)
        return outcome(False, "crashed", None, f"could not start the sandbox: {err}")
    for fd in (in_r, proof_w, out_w):  # only the sandbox holds these ends now
        os.close(fd)
    output, proof, status = _supervise(proc, in_w, payload, out_r, proof_r, limits, len(marker))
    if uid is not None:
        _kill_uid(uid)
    returncode = proc.returncode
    text = output.decode("utf-8", errors="replace")
    passed = status is None and returncode == 0 and hmac.compare_digest(proof, marker)
    if status is None:
        status = "passed" if passed else ("failed" if returncode in (0, 1) else "crashed")
    return outcome(passed, status, returncode, text[-2000:])


def _supervise(proc: subprocess.Popen, in_w: int, payload: bytes, out_r: int, proof_r: int,
               limits: Limits, marker_len: int, grace: float = 0.5) -> tuple[bytes, bytes, str | None]:
    """Feed the payload, read output and proof as they come, until both pipes close or the
    program has exited (plus ``grace`` for what it left in the pipes), or the deadline passes.
    Always ends with the sandbox killed and reaped. Returns (output tail, proof, status), the
    status None when the program ended by itself."""
    deadline = time.monotonic() + limits.wall_seconds
    keep = min(limits.output_bytes, 64 << 10)
    output, proof, written, total = bytearray(), bytearray(), 0, 0
    status, exited_at = None, None
    os.set_blocking(in_w, False)
    selector = selectors.DefaultSelector()
    selector.register(in_w, selectors.EVENT_WRITE)
    selector.register(out_r, selectors.EVENT_READ)
    selector.register(proof_r, selectors.EVENT_READ)
    readers = 2
    try:
        while readers and status is None:
            now = time.monotonic()
            if now >= deadline:
                status = "timeout"
                break
            if exited_at is None and _exited(proc.pid):
                exited_at = now
            if exited_at is not None and now - exited_at > grace:
                break  # a leftover process holds a pipe open; the program itself is done
            for key, _ in selector.select(timeout=min(0.1, deadline - now)):
                fd = key.fd
                if fd == in_w:
                    try:
                        written += os.write(in_w, payload[written:written + (1 << 16)])
                    except BlockingIOError:
                        continue
                    except OSError:  # the runner died before reading everything
                        written = len(payload)
                    if written == len(payload):
                        selector.unregister(in_w)
                        os.close(in_w)
                        in_w = -1
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    selector.unregister(fd)
                    readers -= 1
                elif fd == proof_r:
                    proof += chunk[: max(0, 2 * marker_len - len(proof))]  # the marker or garbage: bounded either way
                else:
                    total += len(chunk)
                    output += chunk
                    del output[:-keep]
                    if total > limits.output_bytes:
                        status = "output_limit"
                        output += f"\n[killed: more than {limits.output_bytes} bytes of output]".encode()
                        break
    finally:
        selector.close()
        _kill_group(proc)
        for fd in (in_w, out_r, proof_r):
            if fd >= 0:
                os.close(fd)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # unkillable (stuck in the kernel): leave it to Popen
            pass
    return bytes(output), bytes(proof), status


def _exited(pid: int) -> bool:
    """Whether ``pid`` has exited, without reaping it (so its process group id stays ours)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the sandbox's process group. Under bwrap that kills bwrap, whose PID namespace
    (``--die-with-parent``) takes every process of the program with it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of the throwaway ``uid`` (a detached child of a ``process``-sandbox
    program; under bwrap the PID namespace has already taken them): a helper running as that uid
    calls kill(-1), which reaches exactly the processes of its uid. Repeated while any remain,
    since a process may fork while the signal goes round."""
    for _ in range(20):
        if not _pids_of(uid):
            return
        subprocess.run(["kill", "-KILL", "-1"], user=uid, group=NOBODY, extra_groups=[],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=SANDBOX_ENV)
        time.sleep(0.01)


def _pids_of(uid: int) -> list[int]:
    """Live (not zombie) processes whose effective uid is ``uid``."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.stat(entry.path).st_uid == uid:
                    with open(os.path.join(entry.path, "stat")) as f:
                        if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                            pids.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return pids


def _rlimits(limits: Limits, per_uid: bool):
    def apply():  # runs in the child after it switched user, so lowering limits always works
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if per_uid:  # our own uid's count includes all our other processes: no sane limit there
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    return apply


@lru_cache(maxsize=None)
def _launcher(sandbox: str) -> _Launcher:
    """The sandbox's launcher with the first interpreter that runs a program inside it: ours,
    else the system's (programs need only the standard library; as ``nobody`` ours may sit in a
    folder only root can read)."""
    if sandbox not in SANDBOXES:
        raise SandboxUnavailable(f"unknown sandbox {sandbox!r} (known: {', '.join(SANDBOXES)})")
    bwrap = shutil.which("bwrap") if sandbox == "bwrap" else None
    if sandbox == "bwrap" and bwrap is None:
        raise SandboxUnavailable("bwrap (bubblewrap) is not installed: install the Debian package "
                                 "bubblewrap (`make setup` tries)")
    pythons = dict.fromkeys(p for p in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")) if p)
    why = "no interpreter"
    for python in pythons:
        launcher = _Launcher(sandbox, python, fresh_uids=os.geteuid() == 0, bwrap=bwrap)
        workdir = tempfile.mkdtemp(prefix="mtad-sandbox-") if sandbox == "process" else None
        try:
            probe = _run(launcher, b"probe\nprint('ok')", b"probe", Limits(wall_seconds=30), workdir)
        finally:
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
        if probe.passed:
            return launcher
        why = f"{python}: {probe.status}: {probe.output.strip().splitlines()[-1] if probe.output.strip() else 'no output'}"
    raise SandboxUnavailable(f"the {sandbox} sandbox cannot run a program here ({why})")
