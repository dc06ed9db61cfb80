"""The request corpus every serving stack is held to (tests/e2e/test_inference_toolkit.py,
tests/parity/test_ray_serve.py): good requests in every accepted type, every refusal, a fault.

Good requests get 200 and breed names, as the handlers answer in-process; a client's mistake
gets its 4xx and our JSON error alone (no traceback, no file paths); a fault in the handlers
(FAULT, planted by `plant_fault`) a 500 with a generic JSON error, the details in the server's
log only.
"""

from __future__ import annotations

import base64
import io
import json
import re
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The documented limits (docs/container-contract.md): SageMaker's InvokeEndpoint takes a body
# of at most 6 MiB (botocore's sagemaker-runtime model: BodyBlob max 6291456).
MAX_BODY_BYTES = 6_291_456
MAX_IMAGES = 16
MAX_JSON_DEPTH = 32
FAULT = "simulated fault with secret detail"
# Absolute paths such as /opt/ml/model/code/inference.py or a site-packages folder.
PATH_PATTERN = re.compile(r"(?<![\w.])/(?:[\w.-]+/)+")


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    content_type: str | None
    status: int
    words: str = ""  # in the JSON error, lower case
    accept: str | None = "application/json"
    images: int = 1
    top_k: int = 3

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        if self.accept is not None:
            headers["Accept"] = self.accept
        return headers


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _instances(jpeg: bytes, count: int) -> bytes:
    return json.dumps({"instances": [{"b64": _b64(jpeg)}] * count}).encode()


def _padded_to(body: bytes, size: int) -> bytes:
    """A JSON body of exactly `size` bytes: whitespace before the closing brace."""
    assert body.endswith(b"}") and len(body) <= size
    return body[:-1] + b" " * (size - len(body)) + b"}"


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _npz(jpeg: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", jpeg)
    return buffer.getvalue()


def cases(jpeg: bytes) -> list[Case]:
    with Image.open(io.BytesIO(jpeg)) as image:
        rgb = np.asarray(image.convert("RGB"))
    png, npy = io.BytesIO(), io.BytesIO()
    Image.fromarray(rgb).save(png, "PNG")
    np.save(npy, rgb)
    json_one = _instances(jpeg, 1)
    return [
        Case("jpeg", jpeg, "image/jpeg", 200),
        Case("png", png.getvalue(), "image/png", 200),
        Case("x-image", png.getvalue(), "application/x-image", 200),
        Case("json-base64", json_one, "application/json", 200),
        Case("npy-uint8", npy.getvalue(), "application/x-npy", 200),
        Case("top_k-in-content-type", jpeg, "image/jpeg; top_k=2", 200, top_k=2),
        Case("accept-any", jpeg, "image/jpeg", 200, accept="*/*"),
        Case("no-accept", jpeg, "image/jpeg", 200, accept=None),
        Case(f"{MAX_IMAGES}-images", _instances(jpeg, MAX_IMAGES), "application/json", 200,
             images=MAX_IMAGES),
        Case("body-of-6-MiB", _padded_to(_instances(jpeg, MAX_IMAGES), MAX_BODY_BYTES),
             "application/json", 200, images=MAX_IMAGES),
        Case("unsupported-content-type", jpeg, "text/plain", 415, "unsupported content type"),
        Case("no-content-type", jpeg, None, 415, "content-type"),
        Case("empty-body", b"", "image/jpeg", 400, "empty"),
        Case("truncated-image", jpeg[: len(jpeg) // 2], "image/jpeg", 400, "truncated or corrupt"),
        Case("not-an-image", b"hello", "image/png", 400, "not an image"),
        Case("malformed-json", b'{"instances": [', "application/json", 400, "malformed json"),
        Case("url-instead-of-bytes", b'{"instances": [{"url": "http://example.com/a.jpg"}]}',
             "application/json", 400, "urls are not fetched"),
        Case("json-100000-levels-deep", _nested(100_000), "application/json", 400,
             f"over the limit of {MAX_JSON_DEPTH}"),
        Case(f"json-{MAX_JSON_DEPTH + 1}-levels-deep", _nested(MAX_JSON_DEPTH + 1),
             "application/json", 400, f"over the limit of {MAX_JSON_DEPTH}"),
        Case(f"{MAX_IMAGES + 1}-images", _instances(jpeg, MAX_IMAGES + 1), "application/json",
             413, f"over the limit of {MAX_IMAGES}"),
        Case("body-over-6-MiB", b"\xff" * (MAX_BODY_BYTES + 1), "image/jpeg", 413,
             f"limit of {MAX_BODY_BYTES} bytes"),
        Case("npz-archive", _npz(jpeg), "application/x-npy", 400, ".npz"),
        Case("bad-accept", jpeg, "image/jpeg", 406, "accept", accept="text/csv"),
        Case("bad-top_k", jpeg, "image/jpeg; top_k=zero", 400, "top_k"),
        Case("json-not-utf-8", b'\xff{"b64": ""}', "application/json", 400, "malformed json"),
        Case("fault-in-the-handlers", jpeg, "image/jpeg; top_k=7", 500, "internal error"),
    ]  # fmt: skip


def tiny_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG")
    return buffer.getvalue()


CASE_NAMES = [case.name for case in cases(tiny_jpeg())]


def same_answer(got: dict, expected: dict, rel: float = 1e-4) -> bool:
    """The same breeds in the same order, probabilities equal to float32 rounding.

    A model-server worker runs the forward pass with its own thread count, and a different
    split of the reductions moves the last digits of a float32 softmax.
    """
    pairs = list(zip(got["predictions"], expected["predictions"], strict=True))
    return all(
        [(p["label"], p["index"]) for p in a] == [(p["label"], p["index"]) for p in b]
        and all(
            p["probability"] == pytest.approx(q["probability"], rel=rel, abs=1e-6)
            for p, q in zip(a, b, strict=True)
        )
        for a, b in pairs
    )


# How far an image's probabilities may be from this checkout's: its torch, torchvision and
# Pillow decode, resize and convolve differently (seen: 0.4 % on a 3-breed softmax under the
# inference image's torch 2.6).
IMAGE_TOLERANCE = 2e-2


def in_process_answers(model_dir: Path):
    """case -> what this checkout's handlers answer in-process, for the good requests."""
    from dogbreed_jobs import inference

    model = inference.model_fn(str(model_dir))

    def answer(case: Case) -> dict:
        data = inference.input_fn(case.body, case.content_type)
        text, _ = inference.output_fn(inference.predict_fn(data, model), case.accept)
        return json.loads(text)

    return answer


HANDLERS = "code/dogbreed_jobs/inference.py"
# What plant_fault adds to the handlers: a failure deep inside predict_fn, for top_k=7 only.
_FAULT_CODE = (
    "\n\n_checkout_batch = _batch\n\n\n"
    "def _batch(request, model):\n"
    "    if request.top_k == 7:\n"
    f"        raise RuntimeError({FAULT!r} + ' in ' + __file__)\n"
    "    return _checkout_batch(request, model)\n"
)


def plant_fault(model_dir: Path) -> None:
    """Make the packed handlers (code/dogbreed_jobs/inference.py) of an extracted model fail
    for top_k=7."""
    path = model_dir / HANDLERS
    path.write_text(path.read_text() + _FAULT_CODE)


def faulty_tarball(model_dir: Path, tarball: Path) -> Path:
    """model.tar.gz of `model_dir` with the fault planted in its handlers."""
    code = (model_dir / HANDLERS).read_text() + _FAULT_CODE
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        for path in sorted(model_dir.rglob("*")):
            name = str(path.relative_to(model_dir))
            if name != HANDLERS:
                tar.add(path, arcname=name, recursive=False)
        info = tarfile.TarInfo(HANDLERS)
        info.size = len(code.encode())
        tar.addfile(info, io.BytesIO(code.encode()))
    return tarball


def check_reply(reply, case: Case, expected: dict | None, tolerance: float, log_text) -> None:
    """`reply` (status, reason, content_type, body) is what `case` must get: `expected` is the
    in-process answer of a good request; `log_text()` the server's log, for a fault."""
    assert reply.status == case.status, reply
    assert reply.content_type.split(";")[0].strip() == "application/json", reply
    answer = json.loads(reply.body)
    if case.status == 200:
        assert same_answer(answer, expected, tolerance), (answer, expected)
        assert len(answer["predictions"]) == case.images
        assert all(len(row) == case.top_k for row in answer["predictions"])
        return
    text = reply.body.decode()
    assert list(answer) == ["error"], text
    assert case.words in answer["error"].lower(), text
    assert "Traceback" not in text and 'File "' not in text, text
    assert not PATH_PATTERN.search(text), text
    assert answer["error"] not in reply.reason and "Traceback" not in reply.reason, reply.reason
    if case.status == 500:
        assert "secret" not in text and "RuntimeError" in answer["error"]
        # The details go to the server's log, for the operator; a server may write a
        # worker's lines to it a moment after the response has gone.
        deadline = time.monotonic() + 30
        while FAULT not in log_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert FAULT in log_text()
