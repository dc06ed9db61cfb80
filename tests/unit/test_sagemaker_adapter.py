"""The stand-in for the Ray Serve DLC's 8080 adapter, against a backend that records what it got.

The backend plays Ray Serve: `/` answers what the test sets, `/-/healthz` answers 200 or not.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers.exchange import exchange

from pipeline.local import sagemaker_adapter
from pipeline.local.ray_endpoint import free_port


class Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list = []
    answer = GOOD = (200, "application/json", b'{"predictions": []}', {})
    healthy = True

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append((self.path, dict(self.headers.items()), body))
        status, content_type, content, extra = type(self).answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(content)

    def do_GET(self):  # noqa: N802
        status = 200 if self.path == "/-/healthz" and type(self).healthy else 503
        self.send_response(status)
        self.send_header("Content-Length", "7")
        self.end_headers()
        self.wfile.write(b"success")

    def log_message(self, *args):
        pass


def _serving(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def stack():
    backend = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    Backend.seen, Backend.healthy, Backend.answer = [], True, Backend.GOOD
    adapter = sagemaker_adapter.serve(0, f"http://127.0.0.1:{backend.server_address[1]}")
    threads = [_serving(backend), _serving(adapter)]
    yield adapter.server_address[1]
    for server in (adapter, backend):
        server.shutdown()
        server.server_close()
    for thread in threads:
        thread.join(5)


def call(port, method, path, body=b"", headers=None):
    return exchange(f"http://127.0.0.1:{port}", method, path, body, headers, timeout=10)


def test_invocations_reach_route_slash_with_the_types_and_sagemaker_headers(stack):
    headers = {"Content-Type": "image/jpeg; top_k=2", "Accept": "*/*",
               "X-Amzn-SageMaker-Custom-Attributes": "trace=1", "X-Other": "dropped"}  # fmt: skip
    status, answered, body = call(stack, "POST", "/invocations", b"\xff\xd8jpeg", headers)
    assert (status, body) == (200, b'{"predictions": []}')
    ((path, seen, sent),) = Backend.seen
    assert (path, sent) == ("/", b"\xff\xd8jpeg")
    assert seen["Content-Type"] == "image/jpeg; top_k=2" and seen["Accept"] == "*/*"
    assert seen["X-Amzn-SageMaker-Custom-Attributes"] == "trace=1"
    assert "X-Other" not in seen


def test_missing_content_type_and_accept_become_json(stack):
    call(stack, "POST", "/invocations", b"{}")
    ((_, seen, _),) = Backend.seen
    assert (seen["Content-Type"], seen["Accept"]) == ("application/json", "application/json")


def test_the_applications_status_body_type_and_sagemaker_headers_pass_through(stack):
    Backend.answer = (413, "application/json", b'{"error": "too big"}',
                      {"X-Amzn-SageMaker-Closed-Session-Id": "s1", "X-Internal": "no"})  # fmt: skip
    status, answered, body = call(stack, "POST", "/invocations", b"x", {"Content-Type": "a/b"})
    assert (status, body) == (413, b'{"error": "too big"}')
    assert answered["Content-Type"] == "application/json"
    assert answered["X-Amzn-SageMaker-Closed-Session-Id"] == "s1"
    assert "X-Internal" not in answered


def test_ping_asks_serves_healthz_and_answers_an_empty_body(stack):
    assert call(stack, "GET", "/ping")[::2] == (200, b"")
    Backend.healthy = False
    assert call(stack, "GET", "/ping")[::2] == (503, b"")


def test_a_backend_that_is_not_there_is_a_503_and_ping_fails():
    adapter = sagemaker_adapter.serve(0, f"http://127.0.0.1:{free_port()}")
    thread = _serving(adapter)
    try:
        port = adapter.server_address[1]
        status, _, body = call(port, "POST", "/invocations", b"{}")
        assert (status, json.loads(body)) == (503, {"error": "Service unavailable"})
        assert call(port, "GET", "/ping")[0] == 503
    finally:
        adapter.shutdown()
        adapter.server_close()
        thread.join(5)
