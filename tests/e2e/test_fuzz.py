"""Property-based fuzzing of the endpoint: input_fn in-process, then the real HTTP server.

Whatever a client sends, input_fn either yields a request that becomes a well-formed batch
tensor, or raises a RequestError (a ValueError) that says what was wrong; the server answers
client garbage with a 4xx JSON error and keeps serving. Every test is derandomized with a
fixed example count, so CI runs the same inputs every time; the hypothesis `deadline` (and
pytest-timeout above it) turns a hang into a failure.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from datetime import timedelta

import numpy as np
import pytest
import torch
from helpers.artifact import IMAGE_SIZE
from helpers.exchange import exchange
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from dogbreed_jobs import inference
from pipeline.local.serve import LocalEndpoint

# Generous: a busy 2-core CI machine must not turn a slow example into a failure, while a
# real hang (seconds on a 32 px image) still shows.
DEADLINE = timedelta(seconds=10)


def fuzz(max_examples: int):
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=DEADLINE,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def classifier(model_artifact):
    return inference.model_fn(str(model_artifact.model_dir))


@pytest.fixture(scope="module")
def jpeg(model_artifact) -> bytes:
    first = sorted((model_artifact.data_root / "test").iterdir())[0]
    return sorted(first.glob("*.jpg"))[0].read_bytes()


@pytest.fixture(scope="module")
def png(jpeg) -> bytes:
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(jpeg)) as image:
        image.convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def npy(jpeg) -> bytes:
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(jpeg)) as image:
        np.save(buffer, np.asarray(image.convert("RGB")))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def top1(classifier, jpeg):
    """The top-1 label of the good request, taken before any fuzzing."""
    return predict_top1(classifier, jpeg)


def predict_top1(classifier, jpeg: bytes) -> str:
    data = inference.input_fn(jpeg, "image/jpeg")
    text, _ = inference.output_fn(inference.predict_fn(data, classifier), "application/json")
    return json.loads(text)["predictions"][0][0]["label"]


def check_input(classifier, body, content_type) -> None:
    """The property: a well-formed batch tensor, or a RequestError with a message."""
    try:
        request = inference.input_fn(body, content_type)
        # Shape checks of preprocessed tensors happen when the batch is built.
        batch = inference._batch(request, classifier)
    except ValueError as err:
        assert isinstance(err, inference.RequestError), f"{type(err).__name__}: {err}"
        assert str(err).strip(), "a RequestError without a message"
        assert 400 <= err.status_code < 500
        return
    assert isinstance(batch, torch.Tensor)
    assert batch.dtype == torch.float32
    assert batch.ndim == 4 and tuple(batch.shape[1:]) == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert 1 <= batch.shape[0] <= inference.DEFAULT_MAX_BATCH
    assert torch.isfinite(batch).all()
    if request.top_k is not None:
        assert request.top_k >= 1


# --------------------------------------------------------------------------- input_fn


def npy_header(shape: str) -> bytes:
    """A version 1.0 .npy header for uint8 data of this shape, without the data."""
    header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header = header.ljust(118) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


# JSON documents of any shape, with the keys input_fn knows mixed into the random ones so
# the fuzz also reaches the branches behind them.
_keys = st.sampled_from(["instances", "b64", "top_k", "url"]) | st.text(max_size=8)
json_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=12,
)


def test_the_good_request_is_answered_before_the_fuzz(top1):
    # Taking `top1` here, first in the module, records the answer before any fuzz input.
    assert top1


@fuzz(300)
@given(body=st.binary(max_size=512), content_type=st.sampled_from(inference.SUPPORTED_TYPES))
# Magic numbers random bytes hardly reach: zip (np.load's .npz path), .npy, PNG and JPEG.
@example(body=b"PK\x03\x04" + b"\0" * 40, content_type="application/x-npy")
@example(body=b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'", content_type="application/x-npy")
# A .npy header declaring a 30 GB array in a body of a few bytes, and a truncated header.
@example(body=npy_header("(100000, 100000, 3)") + b"\0" * 8, content_type="application/x-npy")
@example(body=npy_header("(2, 3)")[:40], content_type="application/x-npy")
@example(body=b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", content_type="image/png")
@example(body=b"\xff\xd8\xff\xe0\0\x10JFIF\0", content_type="image/jpeg")
def test_arbitrary_bytes_are_a_batch_or_a_request_error(classifier, body, content_type):
    check_input(classifier, body, content_type)


@fuzz(200)
@given(document=json_documents)
def test_arbitrary_json_documents_are_a_batch_or_a_request_error(classifier, document):
    check_input(classifier, json.dumps(document).encode(), "application/json")


@fuzz(100)
@given(instances=st.lists(json_documents, max_size=3), top_k=json_documents)
def test_json_instances_of_any_shape_are_a_batch_or_a_request_error(classifier, instances, top_k):
    body = json.dumps({"instances": instances, "top_k": top_k}).encode()
    check_input(classifier, body, "application/json")


def _mutate(data: st.DataObject, original: bytes) -> bytes:
    """Bit flips, a truncation, or inserted bytes at positions hypothesis chooses."""
    mutated = bytearray(original)
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "flip+truncate"]))
    if "flip" in kind:
        for _ in range(data.draw(st.integers(1, 8))):
            position = data.draw(st.integers(0, len(mutated) - 1))
            mutated[position] ^= 1 << data.draw(st.integers(0, 7))
    if "truncate" in kind:
        del mutated[data.draw(st.integers(0, len(mutated) - 1)) :]
    if kind == "insert":
        position = data.draw(st.integers(0, len(mutated)))
        mutated[position:position] = data.draw(st.binary(min_size=1, max_size=16))
    return bytes(mutated)


@fuzz(300)
@given(data=st.data())
def test_mutated_images_are_a_batch_or_a_request_error(classifier, jpeg, png, npy, data):
    name = data.draw(st.sampled_from(["jpeg", "png", "npy", "json"]))
    original = {"jpeg": jpeg, "png": png, "npy": npy, "json": jpeg}[name]
    mutated = _mutate(data, original)
    if name == "json":
        body = json.dumps({"b64": base64.b64encode(mutated).decode()}).encode()
        check_input(classifier, body, "application/json")
    elif name == "npy":
        check_input(classifier, mutated, "application/x-npy")
    else:
        content_type = data.draw(st.sampled_from(inference.IMAGE_TYPES))
        check_input(classifier, mutated, content_type)


_token = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_parameters = st.lists(
    st.tuples(
        st.sampled_from(["top_k", "TOP_K", " top_k ", "charset", "q"]) | _token,
        st.sampled_from(["3", " 2 ", '"1"', "0", "-1", "true", "1e3", "", "99999999999999999999"])
        | _token,
        st.sampled_from(["=", "", "=="]),
    ),
    max_size=3,
)


@fuzz(200)
@given(
    media_type=st.sampled_from([*inference.SUPPORTED_TYPES, "IMAGE/JPEG", " image/png ", ""])
    | _token,
    parameters=_parameters,
)
@example(media_type="image/jpeg", parameters=[("top_k", "3", "=")])
def test_content_types_with_parameters_are_a_batch_or_a_request_error(
    classifier, jpeg, media_type, parameters
):
    content_type = media_type + "".join(f";{key}{sep}{value}" for key, value, sep in parameters)
    check_input(classifier, jpeg, content_type)


def test_input_fn_refuses_a_missing_content_type(classifier, jpeg):
    check_input(classifier, jpeg, None)


def test_a_good_request_predicts_the_same_after_the_fuzz(classifier, jpeg, top1):
    assert predict_top1(classifier, jpeg) == top1


# --------------------------------------------------------------------------- the HTTP server

MAX_BODY = 100_000


@pytest.fixture(scope="module")
def server(model_tarball):
    endpoint = LocalEndpoint(model_tarball, port=0, threads=2, max_body_bytes=MAX_BODY)
    endpoint.bind()
    endpoint.load()
    thread = threading.Thread(target=endpoint.serve_forever, daemon=True)
    thread.start()
    yield endpoint
    endpoint.stop()
    thread.join(30)
    endpoint.close()
    assert not thread.is_alive(), "the server did not stop"


@pytest.fixture(scope="module")
def server_top1(server, jpeg):
    status, _, body = http_request(server, "POST", "/invocations", jpeg, image_headers())
    assert status == 200, body
    return json.loads(body)["predictions"][0][0]["label"]


def image_headers() -> dict:
    return {"Content-Type": "image/jpeg", "Accept": "application/json"}


def http_request(server, method, path, body=b"", headers=None):
    return exchange(server.url, method, path, body, headers, timeout=30)


# Header values http.client will put on the wire (no CR/LF), as visible ASCII and latin-1.
_header_value = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
)
_path = st.sampled_from(["/invocations", "/ping", "/", "/invocations/", "//ping"]) | st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789/%._~-?=&", max_size=20
).map(lambda text: "/" + text)


@fuzz(300)
@given(
    method=st.sampled_from(["POST", "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "FUZZ"]),
    path=_path,
    content_type=st.none() | st.sampled_from(inference.SUPPORTED_TYPES) | _header_value,
    accept=st.none() | st.sampled_from(["application/json", "*/*", "text/csv"]) | _header_value,
    body=st.binary(max_size=1024),
)
def test_server_answers_client_garbage_with_a_4xx_json_error(
    server, server_top1, method, path, content_type, accept, body
):
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    status, response_headers, response = http_request(server, method, path, body, headers)
    assert status < 500, response
    if method == "HEAD":
        assert response == b""
        return
    assert response_headers.get("Content-Type") == "application/json"
    answer = json.loads(response)
    if status >= 400:
        assert isinstance(answer.get("error"), str) and answer["error"].strip()
    elif path == "/invocations":
        assert status == 200 and len(answer["predictions"]) >= 1


@fuzz(100)
@given(raw=st.binary(min_size=1, max_size=256))
@example(raw=b"GET /ping HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
@example(raw=b"POST /invocations HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nabc")
@example(raw=b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
def test_server_survives_malformed_http(server, raw):
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(raw)
        connection.shutdown(socket.SHUT_WR)
        reply = b""
        # waitress answers what it can parse and closes; garbage it cannot may get no answer.
        try:
            while chunk := connection.recv(65536):
                reply += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    if reply.startswith(b"HTTP/1."):
        status = int(reply.split(b" ", 2)[1])
        assert status < 500, reply


def test_server_keeps_answering_after_the_fuzz(server, server_top1, jpeg):
    status, _, body = http_request(server, "GET", "/ping")
    assert status == 200 and json.loads(body) == {"status": "healthy"}
    status, _, body = http_request(server, "POST", "/invocations", jpeg, image_headers())
    assert status == 200, body
    assert json.loads(body)["predictions"][0][0]["label"] == server_top1
