"""serve-local and predict: the real waitress server on 127.0.0.1 serving a real model.tar.gz.

Requests go over real sockets to the model's own code/inference.py; the reference answers come
from this checkout's scripts/inference.py called in-process on the same bytes. The SageMaker
path of `predict` goes through boto3 with AWS_ENDPOINT_URL pointing at a recording stand-in for
the sagemaker-runtime API, so the request boto3 put on the wire is checked, not our arguments.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import io
import json
import logging
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from helpers.exchange import exchange
from helpers.paths import ROOT, SCRIPTS
from PIL import Image

from dogbreed_jobs import inference
from pipeline import cli
from pipeline.local.serve import EndpointApp, LocalEndpoint

# Large enough for every good request below, small enough to cross cheaply.
MAX_BODY = 200_000


# --------------------------------------------------------------------------- helpers


def request(url, method="POST", path="/invocations", body=b"", headers=None):
    """(status, headers, body) of one request on a fresh connection."""
    return exchange(url, method, path, body, headers)


def error_lines(stderr: str) -> list[str]:
    """The CLI's error lines (stderr also carries its progress log)."""
    return [line for line in stderr.splitlines() if line.startswith("dogbreed-pipeline: error:")]


def invoke(url, body, content_type, accept="application/json"):
    headers = {} if content_type is None else {"Content-Type": content_type}
    if accept is not None:
        headers["Accept"] = accept
    return request(url, body=body, headers=headers)


def png_of(jpeg: bytes) -> bytes:
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(jpeg)) as image:
        image.convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def npy_of(jpeg: bytes) -> bytes:
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(jpeg)) as image:
        np.save(buffer, np.asarray(image.convert("RGB")))
    return buffer.getvalue()


def json_of(jpeg: bytes) -> bytes:
    return json.dumps({"instances": [{"b64": base64.b64encode(jpeg).decode()}]}).encode()


def start(endpoint: LocalEndpoint) -> threading.Thread:
    endpoint.bind()
    endpoint.load()
    thread = threading.Thread(target=endpoint.serve_forever, daemon=True)
    thread.start()
    return thread


def stop(endpoint: LocalEndpoint, thread: threading.Thread) -> None:
    endpoint.stop()
    thread.join(30)
    endpoint.close()
    assert not thread.is_alive(), "the server did not stop"


def make_tarball(model_dir: Path, tarball: Path, extra: dict[str, str] | None = None) -> Path:
    """model.tar.gz of model_dir, with files added or replaced (name -> text)."""
    extra = extra or {}
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        for path in sorted(model_dir.rglob("*")):
            name = str(path.relative_to(model_dir))
            if name not in extra:
                tar.add(path, arcname=name, recursive=False)
        for name, text in extra.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return tarball


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def jpeg(model_artifact) -> bytes:
    first = sorted((model_artifact.data_root / "test").iterdir())[0]
    return sorted(first.glob("*.jpg"))[0].read_bytes()


@pytest.fixture(scope="module")
def reference(model_artifact):
    """What scripts/inference.py answers in-process for the same bytes and headers."""
    model = inference.model_fn(str(model_artifact.model_dir))

    def answer(body, content_type, accept="application/json"):
        data = inference.input_fn(body, content_type)
        text, _ = inference.output_fn(inference.predict_fn(data, model), accept)
        return json.loads(text)

    return answer


@pytest.fixture(scope="module")
def server(model_tarball):
    endpoint = LocalEndpoint(model_tarball, port=0, threads=3, max_body_bytes=MAX_BODY)
    thread = start(endpoint)
    yield endpoint
    stop(endpoint, thread)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """Created to let the instrumented code's held request (top_k=5) go on."""
    return tmp_path_factory.mktemp("release") / "go"


@pytest.fixture(scope="module")
def instrumented_tarball(model_artifact, tmp_path_factory, release):
    """A model.tar.gz whose deployed code/dogbreed_jobs/inference.py differs from the checkout's.

    It imports a module of the packed package that the checkout lacks, tags its answers with
    it, fails for top_k=7 and, for top_k=5, holds the request until the file `release` exists
    (at most 60 s), so tests can tell whose code serves (the test process has imported the
    checkout's `dogbreed_jobs` already) and watch faults and shutdowns with a request that is
    surely in flight, however slowly a loaded machine runs the test.
    """
    handlers = "code/dogbreed_jobs/inference.py"
    original = (model_artifact.model_dir / handlers).read_text()
    patched = original + (
        "\n\nimport os as _os\n"
        "import time as _time\n"
        "from dogbreed_jobs import marker\n"
        "_checkout_predict_fn = predict_fn\n\n\n"
        "def predict_fn(data, model):\n"
        "    if data.top_k == 7:\n"
        "        raise RuntimeError('simulated fault with secret detail')\n"
        "    if data.top_k == 5:\n"
        "        _held = _time.monotonic() + 60\n"
        f"        while not _os.path.exists({str(release)!r}) and _time.monotonic() < _held:\n"
        "            _time.sleep(0.01)\n"
        "    answer = _checkout_predict_fn(data, model)\n"
        "    answer['served_by'] = marker.VALUE\n"
        "    return answer\n"
    )
    return make_tarball(
        model_artifact.model_dir,
        tmp_path_factory.mktemp("instrumented") / "model.tar.gz",
        {handlers: patched, "code/dogbreed_jobs/marker.py": "VALUE = 'the deployed code'\n"},
    )


def _running(tarball):
    endpoint = LocalEndpoint(tarball, port=0, grace_seconds=20)
    thread = start(endpoint)
    yield endpoint, thread
    if thread.is_alive():
        stop(endpoint, thread)
    endpoint.close()


@pytest.fixture(scope="module")
def instrumented(instrumented_tarball):
    yield from _running(instrumented_tarball)


@pytest.fixture
def instrumented_to_stop(instrumented_tarball):
    yield from _running(instrumented_tarball)


# --------------------------------------------------------------------------- the contract


def test_ping_answers_200_once_the_model_is_loaded(server):
    status, headers, body = request(server.url, "GET", "/ping")
    assert status == 200
    assert json.loads(body) == {"status": "healthy"}


def test_ping_and_invocations_answer_503_before_the_model_is_loaded():
    app = EndpointApp()
    statuses = []

    def start_response(status, headers):
        statuses.append(status)

    for method, path in (("GET", "/ping"), ("POST", "/invocations")):
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO()}
        body = b"".join(app(environ, start_response))
        assert "loading" in json.loads(body)["error"]
    assert statuses == ["503 Service Unavailable"] * 2


@pytest.mark.parametrize(
    "content_type, encode",
    [
        ("image/jpeg", lambda jpeg: jpeg),
        ("image/png", png_of),
        ("application/json", json_of),
        ("application/x-npy", npy_of),
    ],
    ids=["jpeg", "png", "json-base64", "x-npy"],
)
def test_each_content_type_is_answered_with_the_handlers_top_k_breeds(
    server, reference, jpeg, model_artifact, content_type, encode
):
    body = encode(jpeg)
    status, headers, answer = invoke(server.url, body, content_type)
    assert status == 200, answer
    assert headers["Content-Type"] == "application/json"
    served = json.loads(answer)
    assert served == reference(body, content_type)
    (row,) = served["predictions"]
    assert len(row) == model_artifact.settings["top_k"]
    assert {entry["label"] for entry in row} <= set(model_artifact.class_names)


def test_top_k_in_the_content_type_reaches_the_handlers(server, jpeg):
    status, _, answer = invoke(server.url, jpeg, "image/jpeg; top_k=2")
    assert status == 200
    assert len(json.loads(answer)["predictions"][0]) == 2


def _truncated(jpeg: bytes) -> bytes:
    return jpeg[: len(jpeg) // 2]


BAD_REQUESTS = [
    # id, body (from the good JPEG), content type, accept, status, words in the error
    ("empty body", lambda j: b"", "image/jpeg", None, 400, "empty"),
    ("unsupported content type", lambda j: j, "text/plain", None, 415, "unsupported content type"),
    ("no content type", lambda j: j, None, None, 415, "Content-Type"),
    ("truncated image", _truncated, "image/jpeg", None, 400, "truncated or corrupt"),
    ("not an image", lambda j: b"hello", "image/png", None, 400, "not an image"),
    (
        "malformed JSON",
        lambda j: b'{"instances": [',
        "application/json",
        None,
        400,
        "malformed JSON",
    ),
    (
        "URL instead of bytes",
        lambda j: b'{"instances": [{"url": "http://example.com/dog.jpg"}]}',
        "application/json",
        None,
        400,
        "URLs are not fetched",
    ),
    ("bad Accept", lambda j: j, "image/jpeg", "text/csv", 406, "Accept"),
    ("oversized body", lambda j: b"\xff" * (MAX_BODY + 1), "image/jpeg", None, 413, "limit"),
    ("bad top_k", lambda j: j, "image/jpeg; top_k=zero", None, 400, "top_k"),
]


@pytest.mark.parametrize(
    "make_body, content_type, accept, status, words",
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_gets_its_status_and_a_json_error_naming_the_problem(
    server, reference, jpeg, make_body, content_type, accept, status, words
):
    got, headers, body = invoke(server.url, make_body(jpeg), content_type, accept)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert words.lower() in json.loads(body)["error"].lower()
    # The next good request is answered exactly as before.
    got, _, body = invoke(server.url, jpeg, "image/jpeg")
    assert got == 200
    assert json.loads(body) == reference(jpeg, "image/jpeg")


def test_body_far_over_the_limit_is_refused_with_413_before_it_is_sent(server, jpeg):
    target = urlsplit(server.url)
    with socket.create_connection((target.hostname, target.port), timeout=30) as raw:
        # Only the headers go out: the server must answer without waiting for the body.
        raw.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            + f"Content-Length: {50 * MAX_BODY}\r\n\r\n".encode()
        )
        status_line = raw.makefile("rb").readline()
    assert status_line.split()[1] == b"413"
    assert invoke(server.url, jpeg, "image/jpeg")[0] == 200


@pytest.mark.parametrize(
    "method, path, status",
    [("GET", "/invocations", 405), ("POST", "/ping", 405), ("GET", "/predict", 404)],
)
def test_wrong_route_or_method_is_a_json_4xx(server, method, path, status):
    got, _, body = request(server.url, method, path)
    assert got == status
    assert json.loads(body)["error"]


def test_concurrent_good_and_bad_requests_are_each_answered_correctly(server, reference, jpeg):
    expected = reference(jpeg, "image/jpeg")
    cases = [(jpeg, "image/jpeg", 200), (_truncated(jpeg), "image/jpeg", 400)] * 4
    results = [None] * len(cases)

    def send(index, body, content_type):
        results[index] = invoke(server.url, body, content_type)

    threads = [
        threading.Thread(target=send, args=(i, body, ctype))
        for i, (body, ctype, _) in enumerate(cases)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [result[0] for result in results] == [status for _, _, status in cases]
    for (_, _, body), (_, _, want) in zip(results, cases, strict=True):
        if want == 200:
            assert json.loads(body) == expected


# --------------------------------------------------------------------------- the deployed code


def test_the_models_own_packed_package_serves_though_the_host_imported_its_own(instrumented, jpeg):
    endpoint, _ = instrumented
    status, _, body = invoke(endpoint.url, jpeg, "image/jpeg")
    assert status == 200
    assert json.loads(body)["served_by"] == "the deployed code"
    # The handlers are the packed copies; the test process keeps its own modules of the
    # names the deployed code imported, and gains none of the model's.
    assert endpoint.app.handlers.module.predict_fn.__module__ == "dogbreed_jobs.inference"
    assert endpoint.app.handlers.module.predict_fn is not inference.predict_fn
    assert sys.modules["dogbreed_jobs.inference"] is inference
    assert Path(sys.modules["dogbreed_jobs.model"].__file__).parent == SCRIPTS / "dogbreed_jobs"
    assert "dogbreed_jobs.marker" not in sys.modules and "inference" not in sys.modules


def test_server_fault_is_a_500_without_details_logged_and_the_next_request_succeeds(
    instrumented, jpeg, caplog
):
    endpoint, _ = instrumented
    # The CLI's logging setup (run by other tests) stops propagation at "pipeline".
    logger = logging.getLogger("pipeline.local.serve")
    logger.addHandler(caplog.handler)
    try:
        status, _, body = invoke(endpoint.url, jpeg, "image/jpeg; top_k=7")
    finally:
        logger.removeHandler(caplog.handler)
    assert status == 500
    error = json.loads(body)["error"]
    assert "RuntimeError" in error and "secret detail" not in error
    assert "simulated fault with secret detail" in caplog.text
    assert invoke(endpoint.url, jpeg, "image/jpeg; top_k=2")[0] == 200


def test_stop_lets_the_request_in_progress_finish_then_refuses_connections(
    instrumented_to_stop, jpeg, release
):
    endpoint, thread = instrumented_to_stop
    result = {}
    slow = threading.Thread(
        target=lambda: result.update(answer=invoke(endpoint.url, jpeg, "image/jpeg; top_k=5"))
    )
    slow.start()
    deadline = time.monotonic() + 30
    while not endpoint.app.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert endpoint.app.in_flight == 1
    endpoint.stop()
    release.touch()
    slow.join(30)
    thread.join(30)
    assert not thread.is_alive()
    status, _, body = result["answer"]
    assert status == 200 and len(json.loads(body)["predictions"][0]) == 5
    with pytest.raises(ConnectionRefusedError):
        invoke(endpoint.url, jpeg, "image/jpeg")


def test_unsafe_model_archive_is_refused_before_anything_is_imported(tmp_path, capsys):
    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        info = tarfile.TarInfo("../code/inference.py")
        data = b"raise SystemExit('must never run')\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    code = cli.main(["serve-local", "--model-data", str(tarball), "--port", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing" in err and "../code/inference.py" in err


def test_model_without_serving_code_is_refused_naming_code_inference_py(
    model_artifact, tmp_path, capsys
):
    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        tar.add(model_artifact.model_dir / "model_settings.json", arcname="model_settings.json")
    assert cli.main(["serve-local", "--model-data", str(tarball), "--port", "0"]) == 2
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    assert "code/" in line and "Traceback" not in err


# --------------------------------------------------------------------------- serve-local CLI


def _write_record(store: Path, name: str, model_data: Path) -> None:
    (store / "endpoints").mkdir(parents=True, exist_ok=True)
    record = {
        "EndpointName": name,
        "ModelDataUrl": "s3://bucket/model/model.tar.gz",
        "ModelDataPath": str(model_data),
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "DOGBREED_MAX_BATCH": "2"},
    }
    (store / "endpoints" / f"{name}.json").write_text(json.dumps(record))


def test_serve_local_serves_an_endpoint_record_and_stops_cleanly_on_sigterm(
    model_tarball, tmp_path, jpeg
):
    store = tmp_path / "store"
    _write_record(store, "dogbreed-classifier", model_tarball)
    command = [sys.executable, "-m", "pipeline.cli", "serve-local"]
    command += ["--store", str(store), "--endpoint", "dogbreed-classifier", "--port", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    log, url = "", None
    try:
        selector = selectors.DefaultSelector()
        selector.register(process.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + 240
        while url is None and time.monotonic() < deadline and process.poll() is None:
            if selector.select(timeout=1):
                line = process.stderr.readline()
                log += line
                found = re.search(r" on (http://127\.0\.0\.1:\d+) ", line)
                url = found and found.group(1)
        assert url, log
        assert request(url, "GET", "/ping")[0] == 200
        assert invoke(url, jpeg, "image/jpeg")[0] == 200
        # The record's Environment reaches the handlers, as SageMaker sets it in the container.
        batch = {"instances": [base64.b64encode(jpeg).decode()] * 3}
        status, _, body = invoke(url, json.dumps(batch).encode(), "application/json")
        assert status == 413 and "DOGBREED_MAX_BATCH" in json.loads(body)["error"]
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, log + rest
    assert "stopped" in rest


def test_serve_local_names_the_known_endpoints_when_the_one_asked_for_is_missing(
    model_tarball, tmp_path, capsys
):
    store = tmp_path / "store"
    _write_record(store, "first", model_tarball)
    _write_record(store, "second", model_tarball)
    code = cli.main(["serve-local", "--store", str(store), "--endpoint", "third"])
    assert code == 2
    err = capsys.readouterr().err
    assert "'third'" in err and "first, second" in err
    assert cli.main(["serve-local", "--store", str(store)]) == 2
    assert "pick one with --endpoint (first, second)" in capsys.readouterr().err


def test_serve_local_without_any_endpoint_says_how_to_get_one(tmp_path, capsys):
    assert cli.main(["serve-local", "--store", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no endpoints" in err and "run-local" in err and "--model-data" in err


def test_serve_local_reports_a_record_whose_model_data_is_gone(tmp_path, capsys):
    store = tmp_path / "store"
    _write_record(store, "gone", tmp_path / "deleted" / "model.tar.gz")
    assert cli.main(["serve-local", "--store", str(store), "--endpoint", "gone"]) == 2
    assert "model data" in capsys.readouterr().err


def test_serve_local_refuses_an_endpoint_name_that_could_leave_the_store(tmp_path, capsys):
    assert cli.main(["serve-local", "--store", str(tmp_path), "--endpoint", "../x"]) == 2
    assert "endpoint names" in capsys.readouterr().err


def test_serve_local_reports_a_port_in_use(model_tarball, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli.main(["serve-local", "--model-data", str(model_tarball), "--port", str(port)])
    assert code == 2
    assert "--port" in capsys.readouterr().err


# --------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def images(model_artifact, tmp_path_factory, jpeg):
    folder = tmp_path_factory.mktemp("images")
    (folder / "dog.jpg").write_bytes(jpeg)
    # The name says JPEG, the bytes are PNG: the content type comes from the bytes.
    (folder / "other.jpeg").write_bytes(png_of(jpeg))
    return folder


def test_predict_url_prints_the_top_breeds_of_each_image(server, reference, images, capsys):
    paths = [str(images / "dog.jpg"), str(images / "other.jpeg")]
    assert cli.main(["predict", "--url", server.url, *paths]) == 0
    out = capsys.readouterr().out
    expected = reference((images / "dog.jpg").read_bytes(), "image/jpeg")["predictions"][0]
    blocks = out.strip().split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == paths
    for block in blocks:
        rows = block.splitlines()[2:]
        assert [row.split()[1] for row in rows] == [entry["label"] for entry in expected]
        assert rows[0].split()[2] == f"{expected[0]['probability'] * 100:.2f}%"


def test_predict_json_gives_the_endpoints_predictions_with_top_k(server, reference, images, capsys):
    path = images / "dog.jpg"
    assert cli.main(["predict", "--url", server.url, "--top-k", "4", "--json", str(path)]) == 0
    document = json.loads(capsys.readouterr().out)
    expected = reference(path.read_bytes(), "image/jpeg; top_k=4")["predictions"][0]
    assert document == [{"image": str(path), "predictions": expected}]


@pytest.mark.parametrize(
    "argument, words",
    [
        ("https://example.com/dog.jpg", "is a URL"),
        ("missing.jpg", "no such file"),
        (".", "not a regular file"),
        ("GIF", "a GIF file"),
        ("EMPTY", "empty"),
    ],
)
def test_predict_refuses_anything_but_a_jpeg_or_png_file_before_sending(
    tmp_path, monkeypatch, capsys, argument, words
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    if argument == "GIF":
        argument = "cat.gif"
        Image.new("RGB", (4, 4)).save(tmp_path / argument, "GIF")
    if argument == "EMPTY":
        argument = "empty.png"
        (tmp_path / argument).write_bytes(b"")
    # Nothing listens on this URL: an attempt to send would say "cannot reach".
    code = cli.main(["predict", "--url", "http://127.0.0.1:9", "ok.jpg", argument])
    assert code == 2
    err = capsys.readouterr().err
    assert words in err and argument in err
    assert "cannot reach" not in err


def test_predict_reports_the_servers_refusal_naming_the_image(server, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    assert cli.main(["predict", "--url", server.url, str(bad)]) == 2
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    assert "broken.jpg" in line and "(400)" in line and "not an image" in line


def test_predict_without_a_server_says_so(images, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = cli.main(["predict", "--url", f"http://127.0.0.1:{port}", str(images / "dog.jpg")])
    assert code == 2
    assert "cannot reach" in capsys.readouterr().err


def test_predict_needs_an_endpoint_or_a_url(images, capsys):
    assert cli.main(["predict", str(images / "dog.jpg")]) == 2
    assert "--endpoint" in capsys.readouterr().err


class _Runtime(http.server.BaseHTTPRequestHandler):
    """Stands in for sagemaker-runtime: records each request, answers the queued reply."""

    requests: list = []
    replies: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.requests.append((self.path, dict(self.headers), body))
        status, headers, payload = self.replies.pop(0)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def runtime(monkeypatch):
    _Runtime.requests, _Runtime.replies = [], []
    fake = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Runtime)
    thread = threading.Thread(target=fake.serve_forever, daemon=True)
    thread.start()
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{fake.server_address[1]}")
    yield _Runtime
    fake.shutdown()
    fake.server_close()


def test_predict_on_a_sagemaker_endpoint_sends_the_image_bytes_through_boto3(
    runtime, images, capsys
):
    answer = {"predictions": [[{"label": "Akita", "index": 3, "probability": 0.75}]]}
    runtime.replies.append((200, {"Content-Type": "application/json"}, json.dumps(answer).encode()))
    path = images / "other.jpeg"
    code = cli.main(["predict", "--endpoint", "dogbreed-classifier", "--top-k", "1", str(path)])
    assert code == 0, capsys.readouterr().err
    ((wire_path, headers, body),) = runtime.requests
    assert unquote(wire_path) == "/endpoints/dogbreed-classifier/invocations"
    assert headers["Content-Type"] == "image/png; top_k=1"
    assert headers["Accept"] == "application/json"
    assert body == path.read_bytes()
    assert "Akita" in capsys.readouterr().out


def test_predict_maps_the_containers_refusal_on_sagemaker_to_one_line(runtime, images, capsys):
    error = {
        "ErrorCode": "CLIENT_ERROR_FROM_MODEL",
        "OriginalStatusCode": 415,
        "OriginalMessage": "unsupported content type 'image/png'",
        "Message": "Received client error (415) from primary with message ...",
    }
    runtime.replies.append(
        (424, {"x-amzn-ErrorType": "ModelError", "Content-Type": "application/json"},
         json.dumps(error).encode())
    )  # fmt: skip
    code = cli.main(["predict", "--endpoint", "dogbreed-classifier", str(images / "dog.jpg")])
    assert code == 2
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    assert "(415)" in line and "unsupported content type" in line and "Traceback" not in err


def test_predict_reports_a_missing_sagemaker_endpoint_without_a_traceback(runtime, images, capsys):
    error = {"message": "Endpoint nope of account 123456789012 not found."}
    runtime.replies.append(
        (400, {"x-amzn-ErrorType": "ValidationError", "Content-Type": "application/json"},
         json.dumps(error).encode())
    )  # fmt: skip
    assert cli.main(["predict", "--endpoint", "nope", str(images / "dog.jpg")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err
