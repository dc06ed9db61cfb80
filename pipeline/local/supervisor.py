"""The job processes of one execution: started, watched, and stopped together.

Each job runs in its own process group, so a stop reaches its DataLoader workers and
torchrun ranks too, and the terminal's Ctrl-C reaches the runner first, which then stops
every job cleanly: SIGTERM, then SIGKILL once the grace period is over. After a stop the
supervisor starts nothing more.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess  # nosec B404 - runs our own scripts, never a shell
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# After SIGTERM (a stop, a timeout) a job gets this long to save its state before SIGKILL;
# SageMaker allows 120 s, a local user waits less.
STOP_GRACE_SECONDS = 30
# How many of a job's last non-blank lines a failure can quote.
_KEPT_LINES = 20


class JobFailed(Exception):
    """The job ran and failed (or could not start); the message is its FailureReason."""


@dataclass
class Completed:
    exit_code: int
    last_lines: list[str]
    timed_out: bool
    monitor: object = None


def failure_reason(kind: str, what: str, done: Completed, log_path: Path) -> str:
    """The FailureReason of a job that exited non-zero: its last words, and its log."""
    if done.timed_out:
        return f"MaxRuntimeExceeded: {what} ran past its StoppingCondition (log: {log_path})"
    reason = next((line.strip() for line in reversed(done.last_lines) if line.strip()), "")
    detail = f": {reason}" if reason else ""
    return f"{kind}: {what} exited with code {done.exit_code}{detail} (log: {log_path})"


class Supervisor:
    def __init__(self, grace_seconds: float = STOP_GRACE_SECONDS):
        self.grace_seconds = grace_seconds
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop_all(self) -> None:
        """Stop every running job (SIGTERM, SIGKILL after the grace period); start no new one.

        Returns at once: the threads running the jobs see them end, and a job that ignores
        SIGTERM is killed in the background.
        """
        with self._lock:
            self._stopping.set()
            processes = list(self._running)
        for process in processes:
            threading.Thread(
                target=self._terminate, args=(process,), name="stop-job", daemon=True
            ).start()

    def run(
        self,
        command: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        log_path: Path,
        on_line: Callable[[str], None],
        max_seconds: float | None,
        monitor_factory: Callable[[int], contextlib.AbstractContextManager] | None = None,
    ) -> Completed:
        """Run `command` to its end, its merged output going to `log_path` and `on_line`."""
        if self.stopping:
            raise JobFailed("Stopped: the execution was interrupted before this job started")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        last: list[str] = []
        with open(log_path, "a", encoding="utf-8") as sink:
            sink.write(f"$ {' '.join(command)}\n")
            sink.flush()
            process = self._start(command, cwd, env)
            timed_out = threading.Event()
            timer = None
            if max_seconds:

                def expire():
                    timed_out.set()
                    self._terminate(process)

                timer = threading.Timer(max_seconds, expire)
                timer.daemon = True
                timer.start()
            monitor = monitor_factory(process.pid) if monitor_factory else None
            try:
                with monitor if monitor is not None else contextlib.nullcontext():
                    for line in process.stdout:
                        sink.write(line)
                        sink.flush()
                        text = line.rstrip("\n")
                        if text.strip():
                            last = [*last[-(_KEPT_LINES - 1) :], text]
                        on_line(text)
                    code = process.wait()
            finally:
                if timer:
                    timer.cancel()
                if process.poll() is None:
                    self._terminate(process)
                with self._lock:
                    self._running.discard(process)
            sink.write(f"exit code {code}\n")
        return Completed(code, last, timed_out.is_set(), monitor)

    def _start(self, command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
        try:
            # An argv list, no shell: this interpreter running a script of the bundle.
            process = subprocess.Popen(  # nosec B603
                command,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
                bufsize=1,
                start_new_session=True,
            )
        except OSError as err:
            raise JobFailed(f"ClientError: cannot start {command[0]}: {err.strerror}") from None
        with self._lock:
            self._running.add(process)
            stopping = self.stopping
        if stopping:  # stop_all() ran while this one was starting: it missed it
            self._terminate(process)
        return process

    def _terminate(self, process: subprocess.Popen) -> None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(self.grace_seconds)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
