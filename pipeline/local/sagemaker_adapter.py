"""A stand-in for the 8080 adapter of AWS's Ray Serve DLC (scripts/docker/ray/sagemaker_serve.py).

What that adapter does, on the standard library alone (it runs under any Python: the image
venv's, this project's):

- `POST /invocations` goes to the Ray Serve application's route `/` with the request's body,
  its `Content-Type` and `Accept` (each `application/json` when missing) and its
  `X-Amzn-SageMaker-*` headers; the application's status, body, Content-Type and
  `X-Amzn-SageMaker-*` headers come back unchanged. A timeout is a 504, a refused connection
  a 503, any other proxy failure a 500, each with `{"error": ...}` (the adapter's messages).
- `GET /ping` asks Ray Serve's `/-/healthz`: 200 with an empty body when it answers 200, else
  503.

    python sagemaker_adapter.py --port 8080 --backend http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_TYPE = "application/json"
# The adapter's RAYSERVE_BACKEND_TIMEOUT default.
BACKEND_TIMEOUT = 300.0
HEALTH_TIMEOUT = 5.0
SAGEMAKER_HEADER = "x-amzn-sagemaker-"


def _forward(
    backend: urllib.parse.SplitResult,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
):
    connection = http.client.HTTPConnection(backend.hostname, backend.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


class Adapter(BaseHTTPRequestHandler):
    backend: urllib.parse.SplitResult
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/invocations":
            return self._send(404, b'{"detail":"Not Found"}', DEFAULT_TYPE)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower().startswith(SAGEMAKER_HEADER)}
        headers["Content-Type"] = self.headers.get("Content-Type", DEFAULT_TYPE)
        headers["Accept"] = self.headers.get("Accept", DEFAULT_TYPE)
        try:
            status, answered, content = _forward(
                self.backend, "POST", "/", body, headers, BACKEND_TIMEOUT
            )
        except TimeoutError:
            return self._error(504, "Request timeout")
        except ConnectionRefusedError:
            return self._error(503, "Service unavailable")
        except Exception as err:  # the adapter answers str(e), as AWS's does
            return self._error(500, str(err))
        extra = {k: v for k, v in answered.items() if k.lower().startswith(SAGEMAKER_HEADER)}
        content_type = next(
            (v for k, v in answered.items() if k.lower() == "content-type"), headers["Accept"]
        )
        self._send(status, content, content_type, extra)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/ping":
            return self._send(404, b'{"detail":"Not Found"}', DEFAULT_TYPE)
        try:
            status, _, _ = _forward(self.backend, "GET", "/-/healthz", b"", {}, HEALTH_TIMEOUT)
        except Exception:
            status = 503
        self._send(200 if status == 200 else 503, b"", "text/plain; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode(), DEFAULT_TYPE)

    def _send(self, status: int, body: bytes, content_type: str, extra=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # noqa: A002 - http.server's signature
        sys.stderr.write("adapter: " + format % args + "\n")


def serve(port: int, backend: str, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """The adapter listening on host:port (port 0: any free one), not yet serving."""
    handler = type("BoundAdapter", (Adapter,), {"backend": urllib.parse.urlsplit(backend)})
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--backend", default="http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    server = serve(args.port, args.backend, args.host)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
