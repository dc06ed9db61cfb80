"""The job supervisor on real processes: a stop reaches a job's whole process group, a job
that ignores SIGTERM is killed after the grace period, and nothing starts after a stop."""

from __future__ import annotations

import signal
import sys
import threading
import time

import pytest

from pipeline.local.supervisor import JobFailed, Supervisor

# Prints "ready" once its child (same process group) runs; both sleep far past the test.
PARENT_AND_CHILD = (
    "import subprocess, sys, time; "
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print(child.pid, 'ready', flush=True); time.sleep(60)"
)
IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def start(supervisor: Supervisor, code: str, tmp_path, **kwargs):
    """The job running in a thread; (thread, its outcome, its output lines) once it is ready."""
    lines: list[str] = []
    ready = threading.Event()
    outcome: dict = {}

    def on_line(line: str) -> None:
        lines.append(line)
        if line.endswith("ready"):
            ready.set()

    def job() -> None:
        outcome["done"] = supervisor.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env={},
            log_path=tmp_path / "job.log",
            on_line=on_line,
            max_seconds=kwargs.get("max_seconds"),
        )

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    assert ready.wait(30), lines
    return thread, outcome, lines


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_stop_all_ends_the_job_and_its_children_and_refuses_new_jobs(tmp_path):
    supervisor = Supervisor(grace_seconds=5)
    thread, outcome, lines = start(supervisor, PARENT_AND_CHILD, tmp_path)
    child = int(lines[0].split()[0])
    supervisor.stop_all()
    thread.join(60)
    assert not thread.is_alive()
    # Ended by the SIGTERM itself, not by the SIGKILL that follows the grace period: the exit
    # code says which, however long a loaded machine took to deliver it.
    assert outcome["done"].exit_code == -signal.SIGTERM
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
    with pytest.raises(JobFailed, match="^Stopped: "):
        supervisor.run(
            [sys.executable, "-c", "pass"],
            cwd=tmp_path,
            env={},
            log_path=tmp_path / "next.log",
            on_line=lambda line: None,
            max_seconds=None,
        )


def test_a_job_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    supervisor = Supervisor(grace_seconds=0.5)
    thread, outcome, _ = start(supervisor, IGNORES_SIGTERM, tmp_path)
    supervisor.stop_all()
    thread.join(60)
    assert not thread.is_alive()
    assert outcome["done"].exit_code == -9


def test_a_job_past_max_seconds_is_stopped_and_marked_timed_out(tmp_path):
    supervisor = Supervisor(grace_seconds=5)
    thread, outcome, _ = start(supervisor, PARENT_AND_CHILD, tmp_path, max_seconds=2)
    thread.join(60)
    assert not thread.is_alive()
    assert outcome["done"].timed_out and outcome["done"].exit_code != 0
    assert "exit code" in (tmp_path / "job.log").read_text()
