"""The endpoint as AWS's Ray Serve DLC runs it, on this machine: Ray Serve and the 8080 adapter.

`serve-local --ray-python` and the parity tier serve through it, bench/http_latency.py times it.

`RayEndpoint(model_dir, python)` starts `ray_entrypoint.py` under `python` (a venv that
mirrors the image: `bin/container-env ray-serve`) with the model folder and its code/ on
PYTHONPATH, as the image's entrypoint does, waits until Serve's `/-/healthz` answers and the
application's replica is ready, and puts the adapter stand-in (sagemaker_adapter.py) in front
of it on `port`. Everything is private to it: free ports, Ray's temporary folder, the log.
`stop()` stops Serve and Ray (SIGTERM, as `serve run` stops on Ctrl-C) and, if they are still
there after a grace period, kills the process group.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess  # nosec B404 - a fixed command: the entrypoint stand-in under a given Python
import tempfile
import threading
import time
from pathlib import Path

from pipeline.local import sagemaker_adapter

ENTRYPOINT = Path(__file__).with_name("ray_entrypoint.py")
STARTUP_SECONDS = 300
_STOP_SECONDS = 60


class RayEndpointError(Exception):
    """Ray Serve did not come up: `reason` in a line, `log` the tail of what it printed."""

    def __init__(self, reason: str, log: str):
        super().__init__(f"{reason}:\n{log}")
        self.reason, self.log = reason, log


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class RayEndpoint:
    def __init__(
        self,
        model_dir: str | Path,
        python: str,
        num_cpus: int | None = None,
        port: int = 0,
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
    ):
        self.model_dir = Path(model_dir).resolve()
        # Ray's socket paths must stay short: a folder directly under the system's temp.
        self._root = Path(tempfile.mkdtemp(prefix="ray-"))
        self.log_path = self._root / "serve.log"
        self.serve_port = free_port()
        environment = {
            **os.environ,
            **(env or {}),
            "PYTHONPATH": os.pathsep.join([str(self.model_dir), str(self.model_dir / "code")]),
            "SM_MODEL_DIR": str(self.model_dir),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        environment.pop("PYTHONHOME", None)
        command = [
            python, str(ENTRYPOINT), str(self.model_dir),
            "--http-port", str(self.serve_port),
            "--num-cpus", str(num_cpus or len(os.sched_getaffinity(0))),
            "--temp-dir", str(self._root),
        ]  # fmt: skip
        self._log = open(self.log_path, "wb")  # closed in stop()
        try:
            self._process = subprocess.Popen(  # nosec B603 - our entrypoint, a list, no shell
                command, env=environment, cwd=self._root, stdout=self._log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        except OSError:
            self._log.close()
            shutil.rmtree(self._root, ignore_errors=True)
            raise
        self._adapter = None
        try:
            self._wait_ready()
            self._adapter = sagemaker_adapter.serve(
                port, f"http://127.0.0.1:{self.serve_port}", host
            )
        except BaseException:
            self.stop()
            raise
        self.port = self._adapter.server_address[1]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
        self._thread = threading.Thread(target=self._adapter.serve_forever, daemon=True)
        self._thread.start()

    def _wait_ready(self) -> None:
        """Until the application answers on `/` (healthz alone is up before the replica)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RayEndpointError("Ray Serve exited", self.log_text()[-5000:])
            try:
                healthy, _ = _get(self.serve_port, "/-/healthz")
                routed, _ = _get(self.serve_port, "/")
            except OSError:
                healthy = routed = 0
            # The application answers GET / itself (a 415: no content type); before its
            # replica is up, Serve's proxy answers 404 or 503.
            if healthy == 200 and routed not in (0, 404, 503):
                return
            time.sleep(0.5)
        raise RayEndpointError(
            f"Ray Serve was not ready after {STARTUP_SECONDS} s", self.log_text()[-5000:]
        )

    def log_text(self) -> str:
        """What Serve, Ray and the replicas printed (`serve run` streams the replicas' logs)."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self._adapter is not None:
            self._adapter.shutdown()
            self._adapter.server_close()
            self._adapter = None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        # Whatever of Ray is left in the entrypoint's group (its workers exit with the raylet).
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._process.wait(30)
        self._log.close()
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> RayEndpoint:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
