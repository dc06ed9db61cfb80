"""`serve-local`: a deployed model behind the SageMaker endpoint contract, on this machine.

What SageMaker's PyTorch serving container does, without Docker:

- `model.tar.gz` is extracted (safely: dogbreed_jobs.archive's checks, no links or paths leaving
  the folder) into a private temporary folder that plays `/opt/ml/model`;
- the model's own `code/inference.py` (or the record's `SAGEMAKER_PROGRAM`) is imported from
  the extracted `code/` folder, with that folder on `sys.path` for its imports (the packed
  `dogbreed_jobs`): what serves is the code deployed with the model, never the copy of the
  package this process imported;
- `model_fn(model_dir)` runs once; then every `POST /invocations` goes through
  `input_fn(body, content_type)` -> `predict_fn(data, model)` -> `output_fn(prediction, accept)`
  with the request's `Content-Type` and `Accept` headers (a missing or `*/*` Accept becomes
  `SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`, default JSON), called as the inference toolkit calls
  them: a handler taking one parameter more also gets a request context, whose
  `set_response_status(code, phrase)` sets the answer's status. `GET /ping` answers 200 once
  the model is loaded.

Errors: our handlers, given that context, answer a bad request themselves (its 4xx and
`{"error": ...}`, the bytes the endpoint sends) and a fault with a 500 and a generic error.
Handlers that raise instead (older models) are answered as before: a `ValueError` with an HTTP
`status_code` (400, 406, 413, 415; a plain `ValueError` is a 400) becomes that status with
`{"error": "<the handler's message>"}`, anything else a 500, the traceback in this server's log
and not in the response. Bodies over `max_body_bytes` (default 6 MiB, the most SageMaker's
real-time InvokeEndpoint takes, so what works here fits there) get a 413 before any handler
runs. Unlike the toolkit, which decodes an `application/json` body as UTF-8 before any handler
(and answers bytes that are not UTF-8 with a 500), the body reaches input_fn as sent.

Concurrency: waitress answers on a bounded pool of threads; `predict_fn` runs under a lock, so
one forward pass at a time shares the torch model. Decoding and encoding run in parallel. The
handlers keep no per-request state, and the lock is released however a request ends, so a
failing request cannot affect the next.

Why waitress and plain WSGI: waitress is a production WSGI server in pure Python (no compiler,
works on every platform the CLI runs on, maintained by the Pylons project) with bounded worker
threads, request-size limits and slow-client protection built in. The app has two routes and
reads raw bodies, so a framework (Flask) would add a dependency and nothing we use;
werkzeug's development server is not meant for serving. This server never fetches URLs: it only
reads request bodies.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from dogbreed_jobs import archive

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_THREADS = 2
# The most SageMaker's InvokeEndpoint takes: 6 MiB (botocore's sagemaker-runtime model, BodyBlob
# max 6291456).
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
DEFAULT_PROGRAM = "inference.py"
HANDLER_NAMES = ("model_fn", "input_fn", "predict_fn", "output_fn")
# How long a stop waits for requests already being answered.
DEFAULT_GRACE_SECONDS = 10.0
# How often the server loop looks at the stop flag; a signal handler only sets the flag.
_LOOP_TIMEOUT = 0.25
# After the last answer is returned by the app, how long the loop goes on writing answers out.
_FLUSH_SECONDS = 0.5
_PROGRAM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.py$")


class ServeError(Exception):
    """The model cannot be served (bad archive, missing handlers, model_fn failed, port in use)."""


# --------------------------------------------------------------------------- loading the model


def extract_model(model_data: Path, dest: Path) -> Path:
    """The model folder SageMaker would mount at /opt/ml/model: `dest`, filled from the tarball.

    A folder is taken as an already extracted model and served in place.
    """
    if model_data.is_dir():
        return model_data
    if not model_data.is_file():
        raise ServeError(f"model data {model_data} does not exist")
    if not tarfile.is_tarfile(model_data):
        raise ServeError(f"model data {model_data} is not a tar archive (a model.tar.gz)")
    try:
        archive.extract_tar(model_data, dest)
    except archive.UnsafeArchiveError as exc:
        raise ServeError(f"refusing {model_data}: {exc}") from None
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise ServeError(f"cannot extract {model_data}: {exc}") from None
    return dest


@dataclass
class Handlers:
    module: ModuleType
    model_fn: object
    input_fn: object
    predict_fn: object
    output_fn: object


def load_handlers(code_dir: Path, program: str = DEFAULT_PROGRAM) -> Handlers:
    """Import `code_dir/program` as the serving container does, with `code_dir` on sys.path.

    The modules it imports (the packed `dogbreed_jobs`, or an older model's flat siblings) must
    come from `code_dir` too. This process already has `dogbreed_jobs` (the host imports its
    contract), so modules of those names are set aside for the import and put back after it:
    the handlers keep the deployed copies they bound, and the host process keeps its own.
    """
    if not _PROGRAM_RE.match(program):
        raise ServeError(f"SAGEMAKER_PROGRAM {program!r} is not a Python file name in code/")
    script = code_dir / program
    if not script.is_file():
        raise ServeError(
            f"the model has no code/{program}: it was not packed with its serving code "
            "(train.py writes code/ into the model folder)"
        )
    tops = {path.stem for path in code_dir.glob("*.py")}
    tops |= {path.name for path in code_dir.iterdir() if (path / "__init__.py").is_file()}

    def deployed(name: str) -> bool:
        return name.partition(".")[0] in tops

    shadowed = {name: sys.modules.pop(name) for name in list(sys.modules) if deployed(name)}
    sys.path.insert(0, str(code_dir))
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(script.stem)
    except Exception as exc:
        raise ServeError(f"code/{program} failed to import: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(code_dir))
        for name in [name for name in sys.modules if deployed(name)]:
            del sys.modules[name]
        sys.modules.update(shadowed)
    missing = [handler for handler in HANDLER_NAMES if not callable(getattr(module, handler, None))]
    if missing:
        raise ServeError(f"code/{program} does not define {', '.join(missing)}")
    return Handlers(module, *(getattr(module, handler) for handler in HANDLER_NAMES))


# --------------------------------------------------------------------------- the WSGI app


def client_status(exc: BaseException) -> int | None:
    """The 4xx status for an error the handlers raise for a bad request, else None."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500:
        return status
    if isinstance(exc, ValueError):
        return 400
    return None


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    411: "Length Required",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class RequestContext:
    """What the handlers use of a model server's request context: setting the status.

    The signature is TorchServe's (`ts.context.Context.set_response_status`).
    """

    def __init__(self):
        self.status = 200
        self.phrase = ""

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.status, self.phrase = code, phrase


def _call(handler, context: RequestContext, *args):
    """The handler on `args`, with the context appended when it takes one parameter more
    (sagemaker_inference.transformer.Transformer._run_handler_function)."""
    if len(inspect.signature(handler).parameters) == len(args) + 1:
        return handler(*args, context)
    return handler(*args)


def _status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, 'Client Error' if status < 500 else 'Server Error')}"


class EndpointApp:
    """The WSGI application: `GET /ping` and `POST /invocations`, as SageMaker calls them."""

    def __init__(self, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be at least 1, got {max_body_bytes}")
        self.max_body_bytes = max_body_bytes
        self.handlers: Handlers | None = None
        self.model = None
        self._predict_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.in_flight = 0

    def set_model(self, handlers: Handlers, model) -> None:
        self.handlers, self.model = handlers, model

    @property
    def ready(self) -> bool:
        return self.handlers is not None

    def __call__(self, environ, start_response):
        with self._count_lock:
            self.in_flight += 1
        try:
            status, body, content_type, extra = self._route(environ)
        finally:
            with self._count_lock:
                self.in_flight -= 1
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
        start_response(_status_line(status), headers)
        return [body]

    def _route(self, environ):
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        if path == "/ping":
            if method not in ("GET", "HEAD"):
                return _error(405, f"{method} /ping: use GET", [("Allow", "GET, HEAD")])
            if not self.ready:
                return _error(503, "the model is still loading")
            return 200, b'{"status": "healthy"}', "application/json", []
        if path == "/invocations":
            if method != "POST":
                return _error(405, f"{method} /invocations: use POST", [("Allow", "POST")])
            return self._invoke(environ)
        return _error(404, f"no route {path!r}: this endpoint has GET /ping and POST /invocations")

    def _invoke(self, environ):
        if not self.ready:
            return _error(503, "the model is still loading")
        started = time.perf_counter()
        raw_length = environ.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw_length)
        except ValueError:
            return _error(400, f"invalid Content-Length {raw_length!r}")
        if length > self.max_body_bytes:
            status, body, content_type, extra = _error(
                413,
                f"the request body is {length} bytes, over this endpoint's limit of "
                f"{self.max_body_bytes} bytes; send a smaller image (SageMaker real-time "
                f"endpoints take at most {DEFAULT_MAX_BODY_BYTES} bytes)",
            )
        else:
            request_body = environ["wsgi.input"].read(length) if length > 0 else b""
            status, body, content_type, extra = self._handle(
                request_body, environ.get("CONTENT_TYPE") or None, environ.get("HTTP_ACCEPT")
            )
        log.info(
            "POST /invocations %d (%s, %d bytes) %.0f ms",
            status,
            environ.get("CONTENT_TYPE") or "no content type",
            length,
            (time.perf_counter() - started) * 1000,
        )
        return status, body, content_type, extra

    def _handle(self, body: bytes, content_type: str | None, accept: str | None):
        handlers = self.handlers
        if not accept or accept == "*/*":
            accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json")
        context = RequestContext()
        try:
            data = _call(handlers.input_fn, context, body, content_type)
            with self._predict_lock:
                prediction = _call(handlers.predict_fn, context, data, self.model)
            result = _call(handlers.output_fn, context, prediction, accept)
        except Exception as exc:
            status = client_status(exc)
            if status is None:
                log.exception("the handlers failed on a %s request", content_type)
                return _error(
                    500,
                    f"internal error while answering the request ({type(exc).__name__}); "
                    "the server log has the details",
                )
            log.info("refused a %s request (%d): %s", content_type, status, exc)
            return _error(status, str(exc))
        answer, response_type = _response(result, accept)
        if context.status >= 400:
            log.info(
                "answered a %s request with %d: %s",
                content_type,
                context.status,
                answer.decode("utf-8", "replace"),
            )
        return context.status, answer, response_type, []


def _error(status: int, message: str, extra: list | None = None):
    body = json.dumps({"error": message}).encode("utf-8")
    return status, body, "application/json", extra or []


def _response(result, accept: str | None) -> tuple[bytes, str]:
    """(body, content type) from what output_fn returned, as the inference toolkit reads it."""
    if isinstance(result, tuple) and len(result) == 2:
        body, content_type = result
    else:
        # The toolkit answers in the requested type when output_fn names none.
        body = result
        first = (accept or "").split(",")[0].split(";")[0].strip()
        content_type = first if first and "*" not in first else "application/json"
    if isinstance(body, str):
        body = body.encode("utf-8")
    return bytes(body), content_type


# --------------------------------------------------------------------------- the server


class LocalEndpoint:
    """A served model: `bind()`, `load()`, `serve_forever()`; `stop()` from anywhere.

    `stop()` only sets a flag (safe in a signal handler); the serving loop sees it within a
    quarter of a second, lets the requests the app is answering finish (up to
    `grace_seconds`) and their answers go out, then closes the listening socket and every
    connection. A second `stop()` skips the wait.
    """

    def __init__(
        self,
        model_data: str | Path,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        threads: int = DEFAULT_THREADS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        program: str = DEFAULT_PROGRAM,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
    ):
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.model_data = Path(model_data)
        self.host, self.port, self.threads = host, port, threads
        self.program = program
        self.grace_seconds = grace_seconds
        self.app = EndpointApp(max_body_bytes)
        self._map: dict = {}
        self._server = None
        self._workdir: Path | None = None
        self._code_dir: str | None = None
        self._stopping = threading.Event()
        self._force = threading.Event()
        self._stopped = threading.Event()
        self.url: str | None = None

    # ---- lifecycle

    def bind(self) -> str:
        """Listen on host:port (port 0: any free one) and return the URL; nothing is served yet."""
        from waitress import create_server

        try:
            self._server = create_server(
                self.app,
                map=self._map,
                host=self.host,
                port=self.port,
                threads=self.threads,
                # The app answers oversized bodies with a JSON 413; this cap bounds what
                # waitress buffers (to disk past 512 KB) for a body far over the limit.
                max_request_body_size=2 * self.app.max_body_bytes,
                asyncore_use_poll=True,
                ident="dogbreed-serve-local",
            )
        except OSError as exc:
            self._map.clear()
            raise ServeError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
                + ("; pass another --port" if "in use" in str(exc) else "")
            ) from None
        # One address: the server itself; a host name with several: a server of servers.
        listening = getattr(self._server, "effective_listen", None) or [
            (self._server.effective_host, self._server.effective_port)
        ]
        host, port = listening[0]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        return self.url

    def load(self) -> None:
        """Extract the model, import its serving code, run model_fn once."""
        self._workdir = Path(tempfile.mkdtemp(prefix="dogbreed-serve-"))
        model_dir = extract_model(self.model_data, self._workdir / "model")
        code_dir = model_dir / "code"
        if not code_dir.is_dir():
            raise ServeError(
                f"{self.model_data} has no code/ folder: the model was packed without its "
                "serving code (train.py writes code/inference.py into the model folder)"
            )
        handlers = load_handlers(code_dir.resolve(), self.program)
        self._code_dir = str(code_dir.resolve())
        started = time.perf_counter()
        try:
            model = handlers.model_fn(str(model_dir))
        except Exception as exc:
            log.debug("model_fn failed", exc_info=True)
            raise ServeError(
                f"model_fn failed on {self.model_data}: {type(exc).__name__}: {exc}"
            ) from None
        self.app.set_model(handlers, model)
        log.debug("model_fn took %.1f s", time.perf_counter() - started)

    def serve_forever(self) -> None:
        try:
            while not self._stopping.is_set():
                self._loop(_LOOP_TIMEOUT)
            self._finish_answers()
        finally:
            self._close_server()
            self._stopped.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        if self._stopping.is_set():
            self._force.set()
        self._stopping.set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def close(self) -> None:
        """Release everything: sockets, the extracted model, the code folder on sys.path."""
        self._close_server()
        if self._code_dir and self._code_dir in sys.path:
            sys.path.remove(self._code_dir)
        if self.app.handlers is not None:
            sys.modules.pop(self.app.handlers.module.__name__, None)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> LocalEndpoint:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- stopping

    def _loop(self, timeout: float) -> None:
        """One turn of waitress's event loop over this server's sockets (what its run() repeats)."""
        from waitress import wasyncore

        wasyncore.loop(timeout=timeout, map=self._map, use_poll=True, count=1)

    def _finish_answers(self) -> None:
        """Keep serving while the app is answering (up to grace_seconds), then a moment
        more, so the answers it returned are written to their clients."""
        deadline = time.monotonic() + self.grace_seconds
        while self.app.in_flight and not self._force.is_set():
            if time.monotonic() >= deadline:
                log.warning(
                    "stopping with requests still unanswered after %.0f s", self.grace_seconds
                )
                return
            self._loop(0.05)
        flushed = time.monotonic() + _FLUSH_SECONDS
        while time.monotonic() < flushed and not self._force.is_set():
            self._loop(0.05)

    def _close_server(self) -> None:
        from waitress import wasyncore

        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        server.task_dispatcher.shutdown(timeout=1)
        # The connections still open (keep-alive clients) go with the server.
        wasyncore.close_all(self._map, ignore_all=True)
