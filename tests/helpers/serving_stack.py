"""The endpoint's serving stack on this machine, three ways, each answering `invoke()` alike.

- `TorchServe`: what AWS's PyTorch inference container runs. TorchServe 0.12.0 (Java frontend
  and Python worker) started with the command and the configuration that
  sagemaker-pytorch-inference 2.0.25 builds (`torchserve.py`: `start_torchserve` and
  `_generate_ts_config_properties`, run here), so every request goes through the toolkit's
  `HandlerService` and `Transformer` to the model's own code/inference.py. Needs Java 11+.
- `Worker`: TorchServe's Python backend alone (`ts/model_service_worker.py`), started with the
  environment its frontend gives a worker and driven over its Unix socket in the frontend's
  binary protocol (`ts/protocol/otf_message_handler.py` reads and writes it). Same toolkit and
  handler code, no Java.
- `ServeLocal`: this project's `serve-local` (pipeline/local/serve.py) on 127.0.0.1.

Only the sockets and folders are private to the test (free ports, a temporary folder for
TorchServe's pid file, worker socket and logs); the rest is what the container does.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

# TorchServe's frontend refuses bodies over its default max_request_size with its own 413.
TORCHSERVE_MAX_REQUEST_SIZE = 6_553_500
_STARTUP_SECONDS = 240


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    content_type: str
    body: bytes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def java_version() -> int | None:
    """The major version of `java` on PATH, or None without one."""
    if shutil.which("java") is None:
        return None
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for word in out.stderr.split():
        digits = word.strip('"').split(".")[0]
        if digits.isdigit():
            return int(digits)
    return None


def extract(tarball: Path, dest: Path) -> Path:
    """The model folder SageMaker mounts at /opt/ml/model, from model.tar.gz."""
    from dogbreed_jobs import archive

    archive.extract_tar(tarball, dest)
    return dest


_PATHS_SCRIPT = """
import json, os, sagemaker_pytorch_serving_container as package, ts
from sagemaker_pytorch_serving_container import handler_service
print(json.dumps([
    handler_service.__file__,
    os.path.join(os.path.dirname(package.__file__), "etc", "log4j2.xml"),
    os.path.join(os.path.dirname(ts.__file__), "configs", "metrics.yaml"),
]))
"""


def _toolkit_paths(python: str = sys.executable) -> tuple[Path, Path, Path]:
    """(handler_service.py, the toolkit's log4j2.xml, TorchServe's metrics.yaml) of the
    toolkit that `python` imports."""
    found = subprocess.run(
        [python, "-c", _PATHS_SCRIPT], capture_output=True, text=True, check=True, timeout=120
    )
    handler, log_config, metrics = json.loads(found.stdout)
    return Path(handler), Path(log_config), Path(metrics)


def _http(port: int, method: str, path: str, body: bytes = b"", headers=None) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(
            response.status,
            response.reason,
            response.getheader("Content-Type") or "",
            response.read(),
        )
    finally:
        connection.close()


# The toolkit imports pkg_resources only to find its own etc/ folder; setuptools 81 removed
# it, so this stand-in answers that one call the way pkg_resources did.
_CONFIG_SCRIPT = """
import os, sys, types
def resource_filename(package, name):
    return os.path.join(os.path.dirname(sys.modules[package].__file__), name.lstrip("/"))
try:
    import pkg_resources
except ImportError:
    sys.modules["pkg_resources"] = types.SimpleNamespace(resource_filename=resource_filename)
from sagemaker_pytorch_serving_container import handler_service, torchserve
sys.stdout.write(torchserve._generate_ts_config_properties(handler_service.__file__))
"""


class _Process:
    """A server process in its own process group, its output in a log file."""

    def __init__(self, command: list[str], env: dict, cwd: Path, log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "wb")  # closed in stop()
        self.process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
        self._log.close()


class TorchServe:
    """TorchServe as the inference DLC starts it (sagemaker_pytorch_serving_container.serving)."""

    kind = "torchserve"

    def __init__(
        self,
        model_dir: Path,
        container_env: dict[str, str],
        root: Path,
        python: str = sys.executable,
    ):
        """`python`: the interpreter whose TorchServe and toolkit serve (the inference
        image's venv from bin/container-env, or this one)."""
        handler, log_config, _ = _toolkit_paths(python)
        self.port = free_port()
        (root / "tmp").mkdir()
        (root / "logs").mkdir()
        (root / "store").mkdir()
        env = {
            **os.environ,
            **container_env,
            # torchserve.py's _set_python_path: the model's code/ for `import inference`.
            "PYTHONPATH": str(model_dir / "code"),
            # The container's one port (SAGEMAKER_BIND_TO_PORT, default 8080) for inference
            # and management, as the toolkit configures it.
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            # Private to this test: TorchServe's other ports, pid file, worker sockets, logs.
            "TS_METRICS_ADDRESS": f"http://127.0.0.1:{free_port()}",
            "TS_GRPC_INFERENCE_PORT": str(free_port()),
            "TS_GRPC_MANAGEMENT_PORT": str(free_port()),
            "TS_INITIAL_WORKER_PORT": str(free_port()),
            "TMPDIR": str(root / "tmp"),
            "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={root / 'tmp'}",
            "LOG_LOCATION": str(root / "logs"),
            "METRICS_LOCATION": str(root / "logs"),
        }
        env.pop("PYTHONHOME", None)
        # The image's python first on PATH, as in the container.
        env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", os.defpath)])
        config = subprocess.run(
            [python, "-c", _CONFIG_SCRIPT], env=env, capture_output=True, text=True,
            check=True, timeout=120,
        ).stdout  # fmt: skip
        self.config_path = root / "sagemaker-ts.properties"
        self.config_path.write_text(config)
        torchserve = Path(python).with_name("torchserve")
        # torchserve.py's ts_torchserve_cmd, in the foreground so the test owns the process.
        command = [
            str(torchserve), "--start", "--foreground",
            "--model-store", str(root / "store"),
            "--ts-config", str(self.config_path),
            "--log-config", str(log_config),
            "--models", f"model={model_dir}",
        ]  # fmt: skip
        self._server = _Process(command, env, root, root / "torchserve.log")
        self._wait_ready()
        assert handler.name in config

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _STARTUP_SECONDS
        while time.monotonic() < deadline:
            if not self._server.alive():
                raise RuntimeError(f"TorchServe exited:\n{self._server.log_text()[-5000:]}")
            try:
                workers = self.workers()
            except (OSError, ValueError, KeyError, IndexError):
                workers = []
            if workers and all(worker["status"] == "READY" for worker in workers):
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"TorchServe was not ready:\n{self._server.log_text()[-5000:]}")

    def workers(self) -> list[dict]:
        """The model's workers, from TorchServe's management API (describe model)."""
        reply = _http(self.port, "GET", "/models/model")
        return json.loads(reply.body)[0]["workers"]

    def invoke(self, body: bytes, headers: dict[str, str]) -> Reply:
        return _http(self.port, "POST", "/invocations", body, headers)

    def log_text(self) -> str:
        return self._server.log_text()

    def stop(self) -> None:
        self._server.stop()


class Worker:
    """TorchServe's Python worker, given what its frontend gives it (WorkerLifeCycle.java)."""

    kind = "torchserve-worker"

    def __init__(self, model_dir: Path, container_env: dict[str, str], root: Path):
        handler, _, metrics = _toolkit_paths()
        import ts

        # The frontend's name form, .ts.sock.<port>: the worker parses the number.
        self.socket_path = root / ".ts.sock.9000"
        env = {
            **os.environ,
            **container_env,
            # EnvironmentUtils.getEnvString: the handler's folder, the container's PYTHONPATH
            # (the model's code/, from the toolkit), the model folder.
            "PYTHONPATH": os.pathsep.join([str(handler.parent), str(model_dir / "code"),
                                           str(model_dir)]),
            # The backend settings the frontend passes; decode_input_request=false is the
            # toolkit's default-ts.properties.
            "TS_DECODE_INPUT_REQUEST": "false",
            "TS_IPEX_ENABLE": "false",
            "TS_IPEX_GPU_ENABLE": "false",
        }  # fmt: skip
        env.pop("PYTHONHOME", None)
        command = [
            sys.executable, str(Path(ts.__file__).parent / "model_service_worker.py"),
            "--sock-type", "unix", "--sock-name", str(self.socket_path),
            "--metrics-config", str(metrics),
        ]  # fmt: skip
        # The frontend starts a worker in the model folder.
        self._server = _Process(command, env, model_dir, root / "worker.log")
        self._socket = self._connect()
        self._lock = threading.Lock()
        self._load(model_dir, f"{handler}:handle")

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + _STARTUP_SECONDS
        while time.monotonic() < deadline:
            if not self._server.alive():
                raise RuntimeError(f"the worker exited:\n{self._server.log_text()[-5000:]}")
            if self.socket_path.exists():
                connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    connection.connect(str(self.socket_path))
                    return connection
                except OSError:
                    connection.close()
            time.sleep(0.2)
        raise RuntimeError(f"the worker did not listen:\n{self._server.log_text()[-5000:]}")

    def _load(self, model_dir: Path, handler: str) -> None:
        message = bytearray(b"L")
        message += _field("model") + _field(str(model_dir))
        message += struct.pack("!i", 1)  # batch size
        message += _field(handler)
        message += struct.pack("!i", -1)  # no GPU
        message += _field("")  # no envelope
        message += struct.pack("!?", True)  # limitMaxImagePixels
        self._socket.sendall(message)
        code = self._int()
        text = self._bytes().decode()
        self._int()  # end of list
        if code != 200:
            raise RuntimeError(f"load failed ({code}: {text}):\n{self._server.log_text()}")

    def invoke(self, body: bytes, headers: dict[str, str]) -> Reply:
        """One request as the frontend encodes it: every header, and the body as `body` with
        the Content-Type's media type (HttpUtil.getMimeType) as its type."""
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        message = bytearray(b"I")
        message += _field(uuid.uuid4().hex)
        for name, value in headers.items():
            message += _field(name) + _field(value)
        message += struct.pack("!i", -1)
        message += _field("body") + _field(content_type.split(";")[0].strip())
        message += struct.pack("!i", len(body)) + body
        message += struct.pack("!i", -1)  # end of parameters
        message += struct.pack("!i", -1)  # end of batch
        with self._lock:
            self._socket.sendall(message)
            self._int()  # the batch's code: each request carries its own below
            self._bytes()  # the batch's message
            self._bytes()  # request id
            response_type = self._bytes().decode()
            status = self._int()
            reason = self._bytes().decode()
            for _ in range(self._int()):
                self._bytes(), self._bytes()
            payload = bytes(self._bytes())
            self._int()  # end of list
        return Reply(status, reason, response_type, payload)

    def _recv(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self._socket.recv(size - len(data))
            if not chunk:
                raise ConnectionError(f"the worker hung up:\n{self._server.log_text()[-5000:]}")
            data += chunk
        return bytes(data)

    def _int(self) -> int:
        return struct.unpack("!i", self._recv(4))[0]

    def _bytes(self) -> bytes:
        return self._recv(self._int())

    def log_text(self) -> str:
        return self._server.log_text()

    def stop(self) -> None:
        # A closed connection is how the frontend lets a worker go (it exits 0).
        self._socket.close()
        try:
            self._server.process.wait(30)
        except subprocess.TimeoutExpired:
            pass
        self._server.stop()


def _field(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("!i", len(data)) + data


class ServeLocal:
    """serve-local on 127.0.0.1 with its defaults, in this process."""

    kind = "serve-local"

    def __init__(self, tarball: Path, container_env: dict[str, str]):
        from pipeline.local.serve import LocalEndpoint

        self._saved = {name: os.environ.get(name) for name in container_env}
        # The CLI runs serve-local with the endpoint's environment (cli/serving.py).
        os.environ.update(container_env)
        self._records: list[str] = []
        self._handler = _ListHandler(self._records)
        logging.getLogger().addHandler(self._handler)
        import torch

        # model_fn sizes torch's threads for a worker; this process gets its own back.
        self._threads = torch.get_num_threads()
        self.endpoint = LocalEndpoint(tarball, port=0)
        try:
            self.endpoint.bind()
            self.endpoint.load()
        except BaseException:
            # The environment goes back even when the model fails to load: left behind, the
            # container variables would reach whatever runs next in this process.
            self.endpoint.close()
            self._restore()
            raise
        self._thread = threading.Thread(target=self.endpoint.serve_forever, daemon=True)
        self._thread.start()
        self.port = int(self.endpoint.url.rsplit(":", 1)[1])

    def invoke(self, body: bytes, headers: dict[str, str]) -> Reply:
        return _http(self.port, "POST", "/invocations", body, headers)

    def log_text(self) -> str:
        return "\n".join(self._records)

    def stop(self) -> None:
        self.endpoint.stop()
        self._thread.join(30)
        self.endpoint.close()
        self._restore()

    def _restore(self) -> None:
        import torch

        torch.set_num_threads(self._threads)
        logging.getLogger().removeHandler(self._handler)
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _ListHandler(logging.Handler):
    def __init__(self, records: list[str]):
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.records.append(text)
