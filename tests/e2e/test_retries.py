"""Throttling and transient 5xx from AWS: retried (botocore standard mode, bounded), then one line.

The CLI runs in-process against a small HTTP proxy on 127.0.0.1 (AWS_ENDPOINT_URL) in
front of moto's server. The proxy answers chosen requests itself, as AWS does under
load: SageMaker's JSON protocol with `400 ThrottlingException`, S3 with `503 SlowDown`;
every other request goes on to moto. Each request the proxy sees is one attempt.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from helpers.awsfakes import DEFAULT_BUCKET, DEFINITION, ROLE, moto_client, one_error_line

from pipeline import cli

THROTTLED = (
    400,
    "application/x-amz-json-1.1",
    json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode(),
)
SLOW_DOWN = (
    503,
    "application/xml",
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
)


class Proxy:
    """Forwards to moto; `fault(operation, number)` may answer instead with (status, type, body).

    `operation` is the SageMaker action (from X-Amz-Target) or `s3 METHOD`; `number` counts
    that operation's attempts from 1.
    """

    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.attempts: list[str] = []
        self.fault = lambda operation, number: None
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target")
                operation = target.split(".")[-1] if target else f"s3 {self.command}"
                with proxy.lock:
                    proxy.attempts.append(operation)
                    number = proxy.attempts.count(operation)
                answer = proxy.fault(operation, number)
                if answer is None:
                    answer = proxy.forward(self.command, self.path, self.headers, body)
                status, content_type, payload = answer
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forward(self, method: str, path: str, headers, body: bytes):
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port)
        try:
            skip = {"connection", "content-length", "transfer-encoding"}
            sent = {k: v for k, v in headers.items() if k.lower() not in skip}
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            payload = response.read()
            return response.status, response.getheader("Content-Type") or "", payload
        finally:
            connection.close()

    def count(self, operation: str) -> int:
        return self.attempts.count(operation)


@pytest.fixture
def proxy(moto_server, aws_env):
    urllib.request.urlopen(
        urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    ).close()
    server = Proxy(moto_server)
    aws_env.setenv("AWS_ENDPOINT_URL", server.url)
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def pipeline(moto_server, proxy):
    client = moto_client(moto_server, "sagemaker")
    client.create_pipeline(
        PipelineName="dogbreed-pipeline",
        PipelineDefinition=json.dumps(DEFINITION),
        RoleArn=ROLE,
    )
    return client


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_throttled_start_succeeds_after_two_retries(pipeline, proxy, capsys):
    proxy.fault = lambda op, n: THROTTLED if op == "StartPipelineExecution" and n <= 2 else None
    code, out, err = run(capsys, "start")
    assert code == 0, err
    assert proxy.count("StartPipelineExecution") == 3  # two throttled, then accepted
    (arn,) = out.split()
    listed = pipeline.list_pipeline_executions(PipelineName="dogbreed-pipeline")
    assert [e["PipelineExecutionArn"] for e in listed["PipelineExecutionSummaries"]] == [arn]


def test_transient_503_on_status_is_retried(pipeline, proxy, capsys):
    proxy.fault = lambda op, n: None
    assert run(capsys, "start")[0] == 0
    proxy.attempts.clear()
    unavailable = (503, "application/x-amz-json-1.1", b'{"__type":"ServiceUnavailable"}')
    # moto lacks ListPipelineExecutionSteps: the proxy answers it, as AWS would, with none.
    no_steps = (200, "application/x-amz-json-1.1", b'{"PipelineExecutionSteps": []}')

    def fault(op, n):
        if n == 1:
            return unavailable
        return no_steps if op == "ListPipelineExecutionSteps" else None

    proxy.fault = fault
    code, out, err = run(capsys, "status")
    assert code == 0, err
    # Every operation status makes was refused once and answered on its second attempt.
    assert proxy.attempts and all(proxy.count(op) == 2 for op in set(proxy.attempts))


def test_persistent_throttling_stops_at_aws_max_attempts_with_one_line(
    pipeline, proxy, aws_env, capsys
):
    aws_env.setenv("AWS_MAX_ATTEMPTS", "3")
    proxy.fault = lambda op, n: THROTTLED
    code, out, err = run(capsys, "start")
    assert code == 1
    assert proxy.attempts == ["DescribePipeline"] * 3  # bounded: nothing started
    line = one_error_line(err)
    assert "throttled" in line and "DescribePipeline" in line and "3 attempts" in line
    assert "AWS_MAX_ATTEMPTS" in line
    assert out == ""


def test_s3_slow_down_during_upsert_is_retried(moto_server, proxy, capsys, monkeypatch):
    import pipeline.definition

    # The SDK's build of the real definition takes tens of seconds and is not under test:
    # the code bundle upload (S3) and CreatePipeline are.
    monkeypatch.setattr(
        pipeline.definition, "definition_json", lambda config: json.dumps(DEFINITION)
    )
    moto_client(moto_server, "s3").create_bucket(Bucket=DEFAULT_BUCKET)
    proxy.fault = lambda op, n: SLOW_DOWN if op == "s3 PUT" and n == 1 else None
    code, out, err = run(capsys, "upsert", "--role-arn", ROLE)
    assert code == 0, err
    assert proxy.count("s3 PUT") >= 2 and proxy.count("CreatePipeline") == 1
    stored = moto_client(moto_server, "sagemaker").describe_pipeline(
        PipelineName="dogbreed-pipeline"
    )
    assert out == f"{stored['PipelineArn']}\n"
