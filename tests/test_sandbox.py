"""The subprocess sandbox: passes need exit 0 AND the marker; hostile programs are contained."""

import os
import time

from tasks.sandbox import Limits, run_program


def test_plain_program_passes_and_failing_assert_fails():
    assert run_program("assert 1 + 1 == 2").passed
    out = run_program("assert 1 + 1 == 3")
    assert not out.passed and out.status == "failed" and "AssertionError" in out.output


def test_early_exit_zero_is_not_a_pass():
    out = run_program("import sys\nsys.exit(0)")
    assert out.returncode == 0 and not out.passed


def test_os_exit_before_marker_is_not_a_pass():
    out = run_program("import os\nos._exit(0)")
    assert not out.passed


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_timeout_kills_the_whole_process_group():
    program = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('child', child.pid, flush=True)\n"
        "while True: pass\n"
    )
    start = time.time()
    out = run_program(program, Limits(wall_seconds=1.0))
    assert out.status == "timeout" and not out.passed and time.time() - start < 5
    child = int(out.output.split("child ")[1].split()[0])
    time.sleep(0.2)
    assert not _alive(child), "a child outlived the timeout"


def test_memory_bomb_is_stopped():
    out = run_program("x = bytearray(4 << 30)", Limits(memory_bytes=512 << 20))
    assert not out.passed and "MemoryError" in out.output


def test_file_size_limit():
    out = run_program("open('big', 'wb').write(b'0' * (4 << 20))", Limits(file_bytes=1 << 20))
    assert not out.passed


def test_runs_in_a_fresh_empty_directory_and_cannot_touch_the_project(tmp_path):
    out = run_program("import os\nprint(os.listdir('.'))\nprint(os.getcwd())")
    assert out.passed and "['program.py']" in out.output and "mtad-sandbox-" in out.output
    if out.user == "nobody":
        target = tmp_path / "owned_by_root"
        target.write_text("keep")
        os.chmod(tmp_path, 0o755)
        assert not run_program(f"open({str(target)!r}, 'w').write('gone')").passed
        assert target.read_text() == "keep"


def test_cpu_limit_stops_a_busy_loop_even_with_a_long_wall_limit():
    out = run_program("while True: pass", Limits(wall_seconds=30, cpu_seconds=1))
    assert not out.passed and out.status != "timeout"


def test_a_sandbox_that_cannot_start_is_a_failed_sample(monkeypatch):
    import subprocess

    def refuse(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    out = run_program("print(1)")
    assert not out.passed and out.status == "crashed" and "could not start" in out.output
