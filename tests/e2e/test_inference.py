"""The endpoint handlers, run for real on a small trained DenseNet-161 artifact (CPU).

Each request goes through input_fn -> predict_fn -> output_fn as the SageMaker PyTorch
serving toolkit calls them.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import shutil
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.paths import SCRIPTS
from PIL import Image

from dogbreed_jobs import inference
from dogbreed_jobs.transforms import serve_transform


@pytest.fixture(scope="module")
def classifier(model_artifact):
    return inference.model_fn(str(model_artifact.model_dir))


@pytest.fixture(scope="module")
def test_images(model_artifact):
    """[(class name, JPEG bytes)] of the generated test split, one per class then the rest."""
    items = []
    for folder in sorted((model_artifact.data_root / "test").iterdir()):
        name = folder.name.split(".", 1)[1]
        items.extend((name, path.read_bytes()) for path in sorted(folder.glob("*.jpg")))
    return items


def serve(classifier, body, content_type, accept="application/json"):
    """One request through the three handlers; returns the decoded JSON answer."""
    data = inference.input_fn(body, content_type)
    prediction = inference.predict_fn(data, classifier)
    text, response_type = inference.output_fn(prediction, accept)
    assert response_type == "application/json"
    return json.loads(text)


def pixels(jpeg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as image:
        return np.asarray(image.convert("RGB"))


def encode(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def npy(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, **options)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def by_class(answer: dict, num_classes: int = 6) -> np.ndarray:
    """Images x classes probabilities of an answer that lists every class (top_k >= classes)."""
    table = np.full((len(answer["predictions"]), num_classes), np.nan)
    for image, row in enumerate(answer["predictions"]):
        for entry in row:
            table[image, entry["index"]] = entry["probability"]
    assert not np.isnan(table).any(), "the answer does not list every class"
    return table


def check_well_formed(answer: dict, class_names: list[str], images: int, k: int) -> None:
    assert set(answer) == {"predictions"}
    assert len(answer["predictions"]) == images
    for row in answer["predictions"]:
        assert len(row) == k
        assert [set(entry) for entry in row] == [{"label", "index", "probability"}] * k
        assert all(class_names[entry["index"]] == entry["label"] for entry in row)
        assert len({entry["index"] for entry in row}) == k
        values = [entry["probability"] for entry in row]
        assert values == sorted(values, reverse=True)
        assert all(0.0 <= v <= 1.0 for v in values)
        assert sum(values) <= 1.0 + 1e-6


def test_every_content_type_gives_the_same_prediction_for_the_same_image(
    classifier, test_images, model_artifact
):
    _, jpeg = test_images[0]
    rgb = pixels(jpeg)
    png = encode(rgb, "PNG")
    preprocessed = serve_transform(model_artifact.settings)(Image.fromarray(rgb)).numpy()
    requests = {
        "jpeg": (jpeg, "image/jpeg"),
        "png": (png, "image/png"),
        "x-image": (png, "application/x-image"),
        "json instances": (json.dumps({"instances": [{"b64": b64(jpeg)}]}), "application/json"),
        "json single": (json.dumps({"b64": b64(png)}).encode(), "application/json"),
        "json list": (json.dumps([b64(png)]).encode(), "application/json"),
        "npy uint8 HxWx3": (npy(rgb), "application/x-npy"),
        "npy uint8 NxHxWx3": (npy(rgb[None]), "application/x-npy"),
        "npy float Nx3xHxW": (npy(preprocessed[None]), "application/x-npy"),
        "npy float64 3xHxW": (npy(preprocessed.astype(np.float64)), "application/x-npy"),
    }
    answers = {}
    for name, (body, content_type) in requests.items():
        answers[name] = serve(classifier, body, f"{content_type}; top_k=6")
        check_well_formed(answers[name], model_artifact.class_names, images=1, k=6)

    reference = answers["png"]
    for name, answer in answers.items():
        top = answer["predictions"][0][0]["label"]
        assert top == reference["predictions"][0][0]["label"], name
        # The JPEG was decoded to exactly these pixels, so every route sees the same tensor.
        np.testing.assert_allclose(by_class(answer), by_class(reference), atol=1e-5, err_msg=name)


def test_top_k_comes_from_the_request_defaults_to_the_model_and_is_clamped(classifier, test_images):
    _, jpeg = test_images[0]
    assert len(serve(classifier, jpeg, "image/jpeg")["predictions"][0]) == 3
    assert len(serve(classifier, jpeg, 'image/jpeg; top_k="2"')["predictions"][0]) == 2
    body = json.dumps({"instances": [b64(jpeg)], "top_k": 5})
    assert len(serve(classifier, body, "application/json")["predictions"][0]) == 5
    # The body's top_k wins over the content-type parameter.
    answer = serve(classifier, body, "application/json; top_k=1")
    assert len(answer["predictions"][0]) == 5
    everything = serve(classifier, jpeg, "image/jpeg; charset=binary; top_k=1000")
    row = everything["predictions"][0]
    assert sorted(e["index"] for e in row) == list(range(6))
    assert sum(e["probability"] for e in row) == pytest.approx(1.0, abs=1e-5)


def test_batch_predictions_come_back_in_request_order_and_match_single_requests(
    classifier, test_images, model_artifact
):
    # One image of three different classes, in reverse class order.
    chosen = [test_images[i][1] for i in (20, 10, 0)]
    batch = serve(
        classifier,
        json.dumps({"instances": [{"b64": b64(j)} for j in chosen], "top_k": 6}),
        "application/json",
    )
    check_well_formed(batch, model_artifact.class_names, images=3, k=6)
    singles = [serve(classifier, jpeg, "image/jpeg; top_k=6") for jpeg in chosen]
    # Convolution kernels differ between batch sizes, so agreement is to float precision.
    np.testing.assert_allclose(
        by_class(batch), np.concatenate([by_class(single) for single in singles]), atol=5e-4
    )
    top_labels = [row[0]["label"] for row in batch["predictions"]]
    assert len(set(top_labels)) > 1, "the three classes should not all look alike to the model"


def test_npy_image_batch_matches_the_same_images_sent_as_png(classifier, test_images):
    # An array batch needs one size: resize two photos of different classes to a common one.
    crops = [
        np.asarray(Image.fromarray(pixels(test_images[i][1])).resize((64, 48))) for i in (8, 21)
    ]
    as_npy = serve(classifier, npy(np.stack(crops)), "application/x-npy; top_k=6")
    as_png = serve(
        classifier,
        json.dumps({"instances": [b64(encode(c, "PNG")) for c in crops], "top_k": 6}),
        "application/json",
    )
    np.testing.assert_allclose(by_class(as_npy), by_class(as_png), atol=1e-5)
    assert not np.allclose(by_class(as_npy)[0], by_class(as_npy)[1], atol=1e-3)


def test_exif_orientation_is_applied_before_prediction(classifier, test_images):
    upright = pixels(test_images[12][1])
    # Stored turned clockwise; EXIF orientation 8 tells viewers to turn it back anticlockwise.
    stored = np.rot90(upright, k=-1).copy()
    exif = Image.Exif()
    exif[0x0112] = 8
    tagged = encode(stored, "PNG", exif=exif.tobytes())
    untagged = encode(stored, "PNG")
    reference = by_class(serve(classifier, encode(upright, "PNG"), "image/png; top_k=6"))
    np.testing.assert_allclose(
        by_class(serve(classifier, tagged, "image/png; top_k=6")), reference, atol=1e-5
    )
    # Without the tag the model sees sideways stripes, so the check above is not vacuous.
    sideways = by_class(serve(classifier, untagged, "image/png; top_k=6"))
    assert not np.allclose(sideways, reference, atol=1e-3)


@pytest.mark.parametrize(
    "accept", [None, "", "*/*", "application/json", "text/html, application/json;q=0.9"]
)
def test_json_is_answered_for_any_accept_that_allows_it(accept):
    prediction = {"predictions": [[{"label": "Akita", "index": 3, "probability": 0.5}]]}
    text, content_type = inference.output_fn(prediction, accept)
    assert content_type == "application/json"
    assert json.loads(text) == prediction


def test_unsupported_accept_is_refused_with_406():
    with pytest.raises(
        inference.UnsupportedAcceptError, match="unsupported Accept 'text/csv'"
    ) as e:
        inference.output_fn({"predictions": []}, "text/csv")
    assert e.value.status_code == 406


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size in its header but carries no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def _object_npy() -> bytes:
    return npy(np.array([{"a": 1}], dtype=object), allow_pickle=True)


def _npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((4, 4, 3), np.uint8))
    return buffer.getvalue()


def _ppm() -> bytes:
    return encode(np.zeros((8, 8, 3), np.uint8), "PPM")


def _truncated_jpeg() -> bytes:
    jpeg = encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8), "JPEG")
    return jpeg[: len(jpeg) // 2]


def _url_in_instance() -> str:
    return json.dumps({"instances": [{"url": "http://127.0.0.1:9/dog.jpg"}]})


# (body or a function making it, content type, error class, status, words in the message)
BAD_REQUESTS = {
    "unsupported content type": (
        b"abc",
        "text/plain",
        inference.UnsupportedContentTypeError,
        415,
        "unsupported content type 'text/plain'",
    ),
    "missing content type": (
        b"abc",
        None,
        inference.UnsupportedContentTypeError,
        415,
        "missing Content-Type",
    ),
    "empty body": (b"", "image/jpeg", inference.RequestError, 400, "body is empty"),
    "not an image": (
        b"hello, world",
        "image/jpeg",
        inference.RequestError,
        400,
        "not an image in a supported format",
    ),
    "format outside the allow-list": (
        _ppm,
        "image/png",
        inference.RequestError,
        400,
        "not an image in a supported format",
    ),
    "truncated image": (
        _truncated_jpeg,
        "image/jpeg",
        inference.RequestError,
        400,
        "truncated or corrupt",
    ),
    "image body as text": (
        "\xff\xd8\xff",
        "image/jpeg",
        inference.RequestError,
        400,
        "arrived as text",
    ),
    "oversize header": (
        lambda: _png_header_only(30000, 30000),
        "image/png",
        inference.PayloadTooLargeError,
        413,
        "too large to decode safely",
    ),
    "malformed JSON": (
        b'{"instances": [',
        "application/json",
        inference.RequestError,
        400,
        "malformed JSON",
    ),
    "malformed base64": (
        json.dumps({"b64": "not*base64!"}),
        "application/json",
        inference.RequestError,
        400,
        "instance 0 is not valid base64",
    ),
    "base64 of a non-image": (
        json.dumps([b64(b"plain text")]),
        "application/json",
        inference.RequestError,
        400,
        "instance 0 is not an image",
    ),
    "instance not a string": (
        json.dumps({"instances": [42]}),
        "application/json",
        inference.RequestError,
        400,
        "instance 0 must be a base64 string",
    ),
    "unknown key": (
        json.dumps({"b64": "", "topk": 3}),
        "application/json",
        inference.RequestError,
        400,
        "unknown keys ['topk']",
    ),
    "instances not a list": (
        json.dumps({"instances": "abc"}),
        "application/json",
        inference.RequestError,
        400,
        "'instances' must be a list",
    ),
    "no images": (
        json.dumps({"instances": []}),
        "application/json",
        inference.RequestError,
        400,
        "holds no images",
    ),
    "JSON scalar": (
        b"3",
        "application/json",
        inference.RequestError,
        400,
        "must be an object or a list",
    ),
    "URL at the top": (
        json.dumps({"url": "http://127.0.0.1:9/dog.jpg"}),
        "application/json",
        inference.RequestError,
        400,
        "URLs are not fetched",
    ),
    "URL in an instance": (
        _url_in_instance,
        "application/json",
        inference.RequestError,
        400,
        "URLs are not fetched",
    ),
    "URL as the base64 string": (
        json.dumps(["https://127.0.0.1:9/dog.jpg"]),
        "application/json",
        inference.RequestError,
        400,
        "URLs are not fetched",
    ),
    "top_k zero": (
        b"x",
        "image/jpeg; top_k=0",
        inference.RequestError,
        400,
        "top_k in the content type must be at least 1, got 0",
    ),
    "top_k not a number": (
        b"x",
        "image/jpeg; top_k=three",
        inference.RequestError,
        400,
        "top_k in the content type must be an integer, got 'three'",
    ),
    "top_k boolean": (
        json.dumps({"b64": "", "top_k": True}),
        "application/json",
        inference.RequestError,
        400,
        "top_k in the JSON body must be an integer",
    ),
    "top_k negative": (
        json.dumps({"instances": [], "top_k": -2}),
        "application/json",
        inference.RequestError,
        400,
        "must be at least 1, got -2",
    ),
    "npy wrong dtype": (
        lambda: npy(np.zeros((1, 3, 32, 32), np.int64)),
        "application/x-npy",
        inference.RequestError,
        400,
        "unsupported array dtype int64",
    ),
    "npy grayscale": (
        lambda: npy(np.zeros((32, 32), np.uint8)),
        "application/x-npy",
        inference.RequestError,
        400,
        "HxWx3 or NxHxWx3 (RGB), got shape 32x32",
    ),
    "npy four channels": (
        lambda: npy(np.zeros((1, 4, 32, 32), np.float32)),
        "application/x-npy",
        inference.RequestError,
        400,
        "3xHxW or Nx3xHxW, got shape 1x4x32x32",
    ),
    "npy wrong tensor size": (
        lambda: npy(np.zeros((2, 3, 48, 48), np.float32)),
        "application/x-npy",
        inference.RequestError,
        400,
        "must be Nx3x32x32 for this model (image_size 32), got 2x3x48x48",
    ),
    "npy NaN": (
        lambda: npy(np.full((1, 3, 32, 32), np.nan, np.float32)),
        "application/x-npy",
        inference.RequestError,
        400,
        "NaN or infinite",
    ),
    "npy pickled objects": (
        _object_npy,
        "application/x-npy",
        inference.RequestError,
        400,
        "pickled data is refused",
    ),
    "npz archive": (_npz, "application/x-npy", inference.RequestError, 400, ".npz archive"),
    "not npy": (
        b"\x93NUMPY garbage",
        "application/x-npy",
        inference.RequestError,
        400,
        "not a loadable .npy array",
    ),
}


def _serve_bad(classifier, case):
    body, content_type, *_ = BAD_REQUESTS[case]
    body = body() if callable(body) else body
    return inference.predict_fn(inference.input_fn(body, content_type), classifier)


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_refused_saying_what_is_wrong(classifier, case):
    _, _, error, status, words = BAD_REQUESTS[case]
    with pytest.raises(error) as raised:
        _serve_bad(classifier, case)
    assert isinstance(raised.value, ValueError)
    assert words in str(raised.value)
    assert raised.value.status_code == status
    assert raised.value.message == str(raised.value)


def test_endpoint_keeps_serving_identically_after_every_bad_request(classifier, test_images):
    _, jpeg = test_images[5]
    before = serve(classifier, jpeg, "image/jpeg; top_k=6")
    for case in BAD_REQUESTS:
        with pytest.raises(inference.RequestError):
            _serve_bad(classifier, case)
    after = serve(classifier, jpeg, "image/jpeg; top_k=6")
    assert after == before
    assert not classifier.network.training


def test_urls_are_never_fetched(classifier, monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for case in ("URL at the top", "URL in an instance", "URL as the base64 string"):
        with pytest.raises(inference.RequestError, match="URLs are not fetched"):
            _serve_bad(classifier, case)
    assert attempts == []


def test_pixel_limit_is_checked_from_the_header_before_decoding(classifier, monkeypatch):
    monkeypatch.setenv(inference.MAX_PIXELS_ENV, "10000")
    # 200x100 declared, with no pixel data: decoding would fail as truncated, not oversize.
    with pytest.raises(inference.PayloadTooLargeError) as raised:
        inference.input_fn(_png_header_only(200, 100), "image/png")
    assert "200x100 = 20000 pixels, over the limit of 10000" in str(raised.value)
    assert raised.value.status_code == 413
    uint8 = npy(np.zeros((2, 120, 100, 3), np.uint8))
    with pytest.raises(inference.PayloadTooLargeError, match="12000 pixels, over the limit"):
        inference.input_fn(uint8, "application/x-npy")
    small = encode(np.zeros((50, 60, 3), np.uint8), "PNG")
    assert len(inference.input_fn(small, "image/png").images) == 1


def test_body_byte_limit_is_enforced(classifier, test_images, monkeypatch):
    _, jpeg = test_images[0]
    monkeypatch.setenv(inference.MAX_BODY_BYTES_ENV, str(len(jpeg) - 1))
    with pytest.raises(inference.PayloadTooLargeError) as raised:
        inference.input_fn(jpeg, "image/jpeg")
    assert f"body is {len(jpeg)} bytes, over the limit of {len(jpeg) - 1} bytes" in str(
        raised.value
    )
    monkeypatch.setenv(inference.MAX_BODY_BYTES_ENV, str(len(jpeg)))
    assert len(inference.input_fn(jpeg, "image/jpeg").images) == 1


def test_too_many_images_are_refused_before_decoding(classifier, monkeypatch):
    monkeypatch.setenv(inference.MAX_BATCH_ENV, "2")
    # Undecodable strings: the count is refused before any of them is looked at.
    with pytest.raises(inference.PayloadTooLargeError, match="3 images, over the limit of 2"):
        inference.input_fn(json.dumps({"instances": ["x", "y", "z"]}), "application/json")
    with pytest.raises(inference.PayloadTooLargeError, match="3 images, over the limit of 2"):
        inference.input_fn(npy(np.zeros((3, 3, 32, 32), np.float32)), "application/x-npy")
    two = inference.input_fn(npy(np.zeros((2, 3, 32, 32), np.float32)), "application/x-npy")
    assert two.tensor.shape == (2, 3, 32, 32)


def test_a_bad_limit_setting_is_reported_by_name(monkeypatch):
    monkeypatch.setenv(inference.MAX_BATCH_ENV, "lots")
    with pytest.raises(ValueError, match="DOGBREED_MAX_BATCH='lots' is not an integer"):
        inference.input_fn(json.dumps({"instances": ["x"]}), "application/json")


def test_model_fn_refuses_a_pickled_model_object(model_artifact, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(model_artifact.model_dir, model_dir)
    # A whole pickled module, as the course solutions saved it: loading it would run code.
    torch.save(torch.nn.Linear(2, 2), model_dir / "model.pth")
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        inference.model_fn(str(model_dir))


def test_model_fn_loads_the_class_names_and_settings_it_serves_with(classifier, model_artifact):
    assert list(classifier.class_names) == model_artifact.class_names
    assert classifier.settings["image_size"] == model_artifact.settings["image_size"]
    assert classifier.default_top_k == 3
    assert not classifier.network.training
    assert classifier.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, by dotted name (a from-import's names included)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    return imported


def test_handlers_need_only_the_serving_code_packed_beside_them():
    from dogbreed_jobs import model

    # The two front ends: TorchServe's toolkit imports inference.py, config.yaml ray_app.py.
    needed, imported, queue = set(), set(), ["inference.py", "dogbreed_jobs/ray_app.py"]
    while queue:
        name = queue.pop()
        if name not in needed:
            needed.add(name)
            names = _imports(SCRIPTS / name)
            imported |= {module.split(".")[0] for module in names}
            files = {f"{module.replace('.', '/')}.py" for module in names}
            queue.extend(file for file in files if (SCRIPTS / file).is_file())
    # code/ in model.tar.gz holds only model.SERVING_CODE: anything else would be missing.
    packed = set(model.SERVING_CODE)
    assert needed <= packed, f"serving needs {sorted(needed - packed)} but they are not packed"
    assert "dogbreed_jobs/inference.py" in needed and "dogbreed_jobs/__init__.py" in packed
    # ray_app.py imports Ray Serve, which only the Ray Serve image has; only that image imports it.
    assert {"ray", "starlette"} <= imported
    assert not imported & {"pipeline", "steps"}


def test_pixels_of_all_images_in_a_request_are_capped_together(classifier, monkeypatch):
    monkeypatch.setenv(inference.MAX_REQUEST_PIXELS_ENV, "5000")
    image = b64(encode(np.zeros((50, 60, 3), np.uint8), "PNG"))  # 3000 pixels each
    with pytest.raises(inference.PayloadTooLargeError) as raised:
        inference.input_fn(json.dumps([image, image]), "application/json")
    assert "up to instance 1 hold 6000 pixels together, over the limit of 5000" in str(raised.value)
    assert len(inference.input_fn(json.dumps([image]), "application/json").images) == 1


def test_model_fn_refuses_weights_that_miss_a_layer(model_artifact, tmp_path):
    # The network is built without memory and adopts the loaded tensors: a missing one must
    # stop the load rather than leave an uninitialised layer.
    model_dir = tmp_path / "model"
    shutil.copytree(model_artifact.model_dir, model_dir)
    state = torch.load(model_dir / "model.pth", weights_only=True)
    del state["classifier.3.bias"]
    torch.save(state, model_dir / "model.pth")
    with pytest.raises(RuntimeError, match="Missing key.*classifier.3.bias"):
        inference.model_fn(str(model_dir))


def test_loaded_weights_are_exactly_the_saved_ones(classifier, model_artifact):
    saved = torch.load(model_artifact.model_dir / "model.pth", weights_only=True)
    loaded = classifier.network.state_dict()
    assert saved.keys() == loaded.keys()
    for name, tensor in saved.items():
        assert torch.equal(loaded[name].cpu(), tensor), name


def test_answer_runs_the_handlers_as_a_model_server_and_never_raises(
    classifier, test_images, monkeypatch
):
    """inference.answer, the Ray Serve front end's one call: (status, body, content type)."""
    jpeg = test_images[0][1]
    status, text, content_type = inference.answer(classifier, jpeg, "image/jpeg", None)
    assert (status, content_type) == (200, "application/json")
    assert (
        text
        == inference.output_fn(
            inference.predict_fn(inference.input_fn(jpeg, "image/jpeg"), classifier), None
        )[0]
    )
    assert inference.answer(classifier, jpeg, "text/plain", None)[:1] == (415,)
    status, text, _ = inference.answer(classifier, jpeg, "image/jpeg", "text/csv")
    assert status == 406 and list(json.loads(text)) == ["error"]

    def fail(request, model):
        raise RuntimeError("secret /opt/ml/model detail")

    monkeypatch.setattr(inference, "_batch", fail)
    status, text, _ = inference.answer(classifier, jpeg, "image/jpeg", None)
    assert status == 500
    assert "secret" not in text and "RuntimeError" in json.loads(text)["error"]
