"""SageMaker PyTorch endpoint handlers for the dog-breed classifier.

The serving container calls `model_fn(model_dir)` once, then for every request
`input_fn(body, content_type)`, `predict_fn(data, model)` and `output_fn(prediction, accept)`.

Requests (`Content-Type`):

- `image/jpeg`, `image/png`, `application/x-image`: the body is one image. JPEG, PNG, WebP,
  GIF, BMP and TIFF are decoded whatever the label says; other formats are refused (Pillow's
  rarer decoders, EPS among them, are never reached).
- `application/json`, one of
    `{"instances": [{"b64": "<base64 image>"}, "<base64 image>", ...], "top_k": 3}`,
    `{"b64": "<base64 image>", "top_k": 3}`,
    `["<base64 image>", ...]`.
  Standard base64 (whitespace allowed). Unknown keys are refused, so a typo such as `topk`
  fails loudly instead of being ignored. `{"url": ...}` is refused: this endpoint never
  fetches URLs.
- `application/x-npy`: a `.npy` (never pickled objects) holding either images as uint8
  `H×W×3` / `N×H×W×3` RGB, which go through the same preprocessing as JPEGs, or float
  `3×H×W` / `N×3×H×W` tensors already preprocessed (resized, cropped to the model's
  `image_size` and normalised with its mean and std).

`top_k` (default: the model's `top_k` setting, else 5; at most the number of classes) comes from
the JSON body or from a content-type parameter, `image/jpeg; top_k=3`; the body wins when both
are given.

Response (`Accept` of `application/json`, `*/*` or none), one list per image in request order:
`{"predictions": [[{"label": "Affenpinscher", "index": 0, "probability": 0.93}, ...], ...]}`.

Limits, read from the environment on every request: `DOGBREED_MAX_BATCH` images per request
(16), `DOGBREED_MAX_BODY_BYTES` (6 MiB, SageMaker's real-time payload cap), `DOGBREED_MAX_PIXELS`
per image (Pillow's default) and `DOGBREED_MAX_REQUEST_PIXELS` for all images of a request
together (twice that), checked from the image headers before any pixel is decoded; JSON bodies
nest at most `MAX_JSON_DEPTH` (32) arrays and objects, checked before parsing.

`answer(model, body, content_type, accept)` runs the three per-request handlers with a context,
as a model server does: the front end of the Ray Serve endpoint (ray_app.py) serves with it.

Errors. Called without a context (tests, benchmarks), a handler raises: a rejected request is a
`RequestError` (a `ValueError` carrying an HTTP status: 400, 406, 413 or 415) saying what was
wrong. Under a model server the handlers take the request context as their last argument, as
the inference toolkit passes it, and answer instead of raising: a rejected request becomes that
4xx with `{"error": "<what was wrong>"}` alone, any other exception a 500 with a generic
`{"error": ...}`, its traceback in the server's log. Handlers keep no per-request state, so a
bad request cannot affect the next.

`model_fn` sizes torch's intra-op threads for one model-server worker: the CPUs divided by
`SAGEMAKER_MODEL_SERVER_WORKERS` (when set; an explicit `OMP_NUM_THREADS` wins).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import os
import re
import tokenize
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dogbreed_jobs import model as artifact
from dogbreed_jobs import serving_speed
from dogbreed_jobs.cpus import available_cpus
from dogbreed_jobs.transforms import DEFAULT_MAX_PIXELS, serve_transform, to_rgb

log = logging.getLogger(__name__)

IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"
SUPPORTED_TYPES = (*IMAGE_TYPES, JSON_TYPE, NPY_TYPE)
RESPONSE_TYPE = "application/json"

# The JPEG opener also yields Pillow's MPO images (many camera JPEGs).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

MAX_BATCH_ENV = "DOGBREED_MAX_BATCH"
MAX_BODY_BYTES_ENV = "DOGBREED_MAX_BODY_BYTES"
MAX_PIXELS_ENV = "DOGBREED_MAX_PIXELS"
MAX_REQUEST_PIXELS_ENV = "DOGBREED_MAX_REQUEST_PIXELS"
# The toolkit's worker count (sagemaker_inference/parameters.py, MODEL_SERVER_WORKERS_ENV),
# which it hands to TorchServe as default_workers_per_model.
WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
# 16 images of ~280 KB each still fit base64-encoded in one 6 MiB request, and bound the
# forward pass of a request to 16 images.
DEFAULT_MAX_BATCH = 16
# InvokeEndpoint takes a body of at most 6 MiB (botocore's sagemaker-runtime model: BodyBlob
# max 6291456); a larger limit here could never be reached through SageMaker.
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
# Our JSON needs 3 levels ({"instances": [{"b64": ...}]}); json.loads recurses once per level
# and a 6 MiB body can nest millions deep.
MAX_JSON_DEPTH = 32
# Two maximal photos: about 540 MB of decoded RGB, a bound per worker process.
DEFAULT_MAX_REQUEST_PIXELS = 2 * DEFAULT_MAX_PIXELS
DEFAULT_TOP_K = 5

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# A JSON string, escapes included: brackets inside strings are not nesting.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_TOP_KEYS = {"instances", "top_k"}
_JSON_SINGLE_KEYS = {"b64", "top_k"}

try:
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError
except ImportError:  # outside the serving container: same attributes, no toolkit needed

    class _ToolkitError(Exception):
        def __init__(self, status_code: int, message: str, phrase: str):
            self.status_code = status_code
            self.message = message
            self.phrase = phrase
            super().__init__(status_code, message, phrase)


class RequestError(ValueError, _ToolkitError):
    """A request this endpoint cannot serve; `str()` says why, `status_code` for the toolkit."""

    status_code = 400
    phrase = "Bad Request"

    def __init__(self, message: str):
        _ToolkitError.__init__(self, type(self).status_code, message, type(self).phrase)

    def __str__(self) -> str:
        return self.message


class UnsupportedContentTypeError(RequestError):
    status_code = 415
    phrase = "Unsupported Media Type"


class UnsupportedAcceptError(RequestError):
    status_code = 406
    phrase = "Not Acceptable"


class PayloadTooLargeError(RequestError):
    status_code = 413
    phrase = "Payload Too Large"


INTERNAL_ERROR_STATUS = 500
INTERNAL_ERROR_PHRASE = "Internal Server Error"


@dataclass(frozen=True)
class Refusal:
    """An answered error: what the handlers hand on, under a model server, instead of raising."""

    status_code: int
    phrase: str
    message: str

    def body(self) -> str:
        return json.dumps({"error": self.message})


@dataclass(frozen=True)
class Classifier:
    """What `model_fn` loads once and `predict_fn` reads (never writes) on every request."""

    network: torch.nn.Module
    class_names: tuple[str, ...]
    settings: dict
    transform: object
    device: torch.device
    default_top_k: int
    # The serving mode (serving_speed.MODES) and the callable running the network in it.
    mode: str
    runner: object


@dataclass(frozen=True)
class Request:
    """A decoded request: either RGB images or an already preprocessed float batch."""

    images: tuple[Image.Image, ...] = ()
    tensor: torch.Tensor | None = None
    top_k: int | None = None


def model_fn(model_dir: str) -> Classifier:
    # One parameter only: the inference toolkit passes its context to a two-parameter model_fn.
    threads = intra_op_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    log.info("intra-op threads: %d", torch.get_num_threads())
    return load_classifier(model_dir)


def intra_op_threads() -> int | None:
    """Torch threads for one model-server worker, or None to keep torch's own choice.

    TorchServe starts SAGEMAKER_MODEL_SERVER_WORKERS workers (one per vCPU when unset) and
    torch gives each every core: with several workers the forward passes fight over the CPUs.
    Each worker gets its share instead. Unset, the count of workers is the model server's
    guess, so torch's default stays; an explicit OMP_NUM_THREADS is the operator's choice.
    """
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    if not os.environ.get(WORKERS_ENV, "").strip():
        return None
    return max(1, available_cpus() // _limit(WORKERS_ENV, 1))


def load_classifier(
    model_dir: str, mode: str | None = None, device: str | torch.device | None = None
) -> Classifier:
    """What model_fn returns; `mode` overrides DOGBREED_SERVING_MODE (for tests and benchmarks)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    # Checked before the weights are read, so a bad setting fails in milliseconds.
    mode = serving_speed.serving_mode(device, mode)
    # load_artifact reads the state_dict with torch.load(weights_only=True): no unpickling.
    network, class_names, settings = artifact.load_artifact(model_dir, device)
    return Classifier(
        network=network,
        class_names=tuple(class_names),
        settings=settings,
        transform=serve_transform(settings),
        device=device,
        default_top_k=int(settings.get("top_k") or DEFAULT_TOP_K),
        mode=mode,
        runner=serving_speed.prepare(network, device, mode, int(settings["image_size"])),
    )


def _limit(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None
    if value < 1:
        raise ValueError(f"environment variable {name}={raw!r} must be at least 1")
    return value


def _parse_media_type(value: str | None, header: str) -> tuple[str, dict[str, str]]:
    """`image/jpeg; top_k=3` -> ("image/jpeg", {"top_k": "3"})."""
    if value is None or not str(value).strip():
        raise UnsupportedContentTypeError(
            f"missing {header}; use one of {', '.join(SUPPORTED_TYPES)}"
        )
    media_type, *parameters = str(value).split(";")
    params = {}
    for parameter in parameters:
        key, _, raw = parameter.partition("=")
        params[key.strip().lower()] = raw.strip().strip('"')
    return media_type.strip().lower(), params


def _parse_top_k(value: object, source: str) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise RequestError(f"top_k in the {source} must be an integer, got {value!r}") from None
    # bool is an int subclass, and `true` as a count is a client bug, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"top_k in the {source} must be an integer, got {value!r}")
    if value < 1:
        raise RequestError(f"top_k in the {source} must be at least 1, got {value}")
    return value


def _body_bytes(body: object, content_type: str) -> bytes:
    # TorchServe hands over a request without a body as None.
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        if content_type == JSON_TYPE:
            return body.encode("utf-8")
        raise RequestError(
            f"a {content_type} body must be binary, but it arrived as text (was it decoded?)"
        )
    raise RequestError(f"unsupported request body type {type(body).__name__}")


def _check_batch_size(count: int) -> None:
    if count == 0:
        raise RequestError("the request holds no images")
    max_batch = _limit(MAX_BATCH_ENV, DEFAULT_MAX_BATCH)
    if count > max_batch:
        raise PayloadTooLargeError(
            f"the request holds {count} images, over the limit of {max_batch} per request "
            f"({MAX_BATCH_ENV}); split it into smaller requests"
        )


def _check_pixels(width: int, height: int, where: str) -> None:
    max_pixels = _limit(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS)
    if width * height > max_pixels:
        raise PayloadTooLargeError(
            f"{where} is {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} pixels ({MAX_PIXELS_ENV})"
        )
    if width < 1 or height < 1:
        raise RequestError(f"{where} has no pixels ({width}x{height})")


def _open_image(data: bytes, where: str) -> Image.Image:
    """The image with only its header read, refused if oversized before any pixel is decoded."""
    if not data:
        raise RequestError(f"{where} is empty")
    try:
        # Our own pixel limit is checked below from the header; silence Pillow's warning
        # for sizes between its two thresholds so the limit is ours alone.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as err:
        raise PayloadTooLargeError(f"{where} is too large to decode safely: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise RequestError(
            f"{where} is not an image in a supported format ({', '.join(IMAGE_FORMATS)}): {err}"
        ) from None
    try:
        _check_pixels(image.width, image.height, where)
    except RequestError:
        image.close()
        raise
    return image


def _load_rgb(image: Image.Image, where: str) -> Image.Image:
    with image:
        try:
            image.load()
            return to_rgb(image)
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise RequestError(f"{where} is truncated or corrupt: {err}") from None


def decode_images(blobs: list[tuple[bytes, str]]) -> tuple[Image.Image, ...]:
    """Upright RGB images from (encoded bytes, name for messages) pairs.

    Besides the per-image limit, the pixels of one request are capped together: a few
    kilobytes of flat-colour PNG can decode to hundreds of megabytes each.
    """
    budget = _limit(MAX_REQUEST_PIXELS_ENV, DEFAULT_MAX_REQUEST_PIXELS)
    used = 0
    images = []
    for data, where in blobs:
        image = _open_image(data, where)
        used += image.width * image.height
        if used > budget:
            image.close()
            raise PayloadTooLargeError(
                f"the images up to {where} hold {used} pixels together, over the limit of "
                f"{budget} per request ({MAX_REQUEST_PIXELS_ENV}); send fewer or smaller images"
            )
        images.append(_load_rgb(image, where))
    return tuple(images)


def _decode_base64(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise RequestError(f"{where} must be a base64 string, got {type(text).__name__}")
    if _URL.match(text.strip()):
        raise RequestError(
            f"{where} looks like a URL; URLs are not fetched, send the image bytes as base64"
        )
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(f"{where} is not valid base64: {err}") from None


def _reject_url(item: dict, where: str) -> None:
    if "url" in item:
        raise RequestError(
            f"{where} gives a 'url'; URLs are not fetched, send the image bytes as base64 in 'b64'"
        )


def json_depth(data: bytes) -> int:
    """How deep arrays and objects nest in a JSON text, found without parsing it.

    Strings are cut out first (their brackets are text), then the remaining brackets are
    counted: in valid JSON this is the depth json.loads would reach, and in invalid JSON it is
    at least the depth json.loads reaches before it fails.
    """
    structure = np.frombuffer(_JSON_STRING.sub(b"", data), dtype=np.uint8)
    opens = (structure == ord("[")) | (structure == ord("{"))
    closes = (structure == ord("]")) | (structure == ord("}"))
    steps = opens.astype(np.int32) - closes.astype(np.int32)
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def _parse_json(data: bytes) -> tuple[list[str], int | None]:
    """The base64 strings of a JSON request, and its top_k if it gives one."""
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise RequestError(
            f"the JSON body nests {depth} levels deep, over the limit of {MAX_JSON_DEPTH}; "
            'send {"instances": [{"b64": ...}, ...]}'
        )
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RequestError(f"malformed JSON body: {err}") from None
    top_k = None
    if isinstance(document, list):
        instances = document
    elif isinstance(document, dict):
        _reject_url(document, "the request")
        allowed = _JSON_TOP_KEYS if "instances" in document else _JSON_SINGLE_KEYS
        unknown = sorted(set(document) - allowed)
        if unknown:
            raise RequestError(
                f"unknown keys {unknown} in the JSON body; expected {sorted(_JSON_TOP_KEYS)} "
                f"or {sorted(_JSON_SINGLE_KEYS)}"
            )
        if "top_k" in document:
            top_k = _parse_top_k(document["top_k"], "JSON body")
        if "instances" in document:
            instances = document["instances"]
            if not isinstance(instances, list):
                raise RequestError(f"'instances' must be a list, got {type(instances).__name__}")
        elif "b64" in document:
            instances = [document["b64"]]
        else:
            raise RequestError("the JSON body has neither 'instances' nor 'b64'")
    else:
        raise RequestError(
            f"the JSON body must be an object or a list, got {type(document).__name__}"
        )
    _check_batch_size(len(instances))
    strings = []
    for position, instance in enumerate(instances):
        where = f"instance {position}"
        if isinstance(instance, dict):
            _reject_url(instance, where)
            if set(instance) != {"b64"}:
                raise RequestError(f"{where} must be {{'b64': ...}}, got keys {sorted(instance)}")
            instance = instance["b64"]
        strings.append(instance)
    return strings, top_k


def _check_npy_header(data: bytes) -> None:
    """Refuse a body np.load must not see: a zip, or a header declaring more data than sent.

    np.load takes any zip for an .npz archive (a broken one raises zipfile's own error), and
    allocates the array its header declares before reading it: a 100-byte body declaring
    10^11 elements would raise MemoryError, or take gigabytes, instead of a clean 400.
    """
    if data.startswith(b"PK"):
        raise RequestError("expected a single .npy array, got a .npz archive (or another zip)")
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        # Version 3.0 only adds utf-8 field names of structured dtypes, which are refused anyway.
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    # A truncated header dict fails in numpy's tokenizer, not as a ValueError.
    except (ValueError, EOFError, SyntaxError, tokenize.TokenError) as err:
        raise RequestError(f"not a loadable .npy array (malformed): {err}") from None
    # Object arrays are pickled, whatever their shape; np.load refuses them below.
    if dtype.hasobject:
        return
    declared = dtype.itemsize
    for size in shape:
        declared *= size
    sent = len(data) - stream.tell()
    if declared > sent:
        raise RequestError(
            f"not a loadable .npy array (malformed): its header declares {declared} bytes of "
            f"data ({'x'.join(str(n) for n in shape)} {dtype}), the body holds {sent}"
        )


def _parse_npy(data: bytes) -> Request:
    _check_npy_header(data)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        # numpy names allow_pickle when the body holds pickled objects, which could run code.
        reason = "pickled data is refused" if "allow_pickle" in str(err) else "malformed"
        raise RequestError(f"not a loadable .npy array ({reason}): {err}") from None
    shape = "x".join(str(n) for n in array.shape)
    if array.dtype == np.uint8:
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[-1] != 3:
            raise RequestError(
                f"a uint8 array must be images HxWx3 or NxHxWx3 (RGB), got shape {shape}"
            )
        _check_batch_size(array.shape[0])
        _check_pixels(array.shape[2], array.shape[1], "each image")
        return Request(
            images=tuple(Image.fromarray(np.ascontiguousarray(image)) for image in array)
        )
    if array.dtype.kind == "f":
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[1] != 3:
            raise RequestError(
                f"a float array must be preprocessed tensors 3xHxW or Nx3xHxW, got shape {shape}"
            )
        _check_batch_size(array.shape[0])
        if not np.isfinite(array).all():
            raise RequestError("the float array holds NaN or infinite values")
        # astype also turns a big-endian array native, which torch needs.
        return Request(tensor=torch.from_numpy(array.astype(np.float32)))
    raise RequestError(
        f"unsupported array dtype {array.dtype}; send uint8 RGB images or float32 tensors"
    )


def _refusal(err: Exception) -> Refusal:
    if isinstance(err, RequestError):
        return Refusal(err.status_code, err.phrase, err.message)
    # The client learns only the exception's type: its message and traceback may name paths.
    log.error("internal error while answering a request", exc_info=err)
    return Refusal(
        INTERNAL_ERROR_STATUS,
        INTERNAL_ERROR_PHRASE,
        f"internal error while answering the request ({type(err).__name__}); "
        "the server log has the details",
    )


# Why the handlers answer errors themselves under a model server. In sagemaker-pytorch-inference
# 2.0.25 an exception leaving a handler reaches Transformer.transform's `except`
# (sagemaker_inference/transformer.py:167-176), and handle_error (:91-113) answers the
# exception's message followed by the whole traceback, file paths included; anything but a
# BaseInferenceToolkitError also becomes a 500 whose reason phrase is the message. What the
# toolkit supports instead: a handler taking one parameter more is passed the context
# (_run_handler_function, :272-292); context.set_response_status(code=, phrase=) sets the
# response's status (handle_error's own call, :109-112; TorchServe reads it for each request
# in ts/protocol/otf_message_handler.py create_predict_response); and output_fn's (body,
# content type) is sent as it is (:154-166). So with a context the handlers hand a Refusal on,
# and output_fn answers it.


def input_fn(request_body, request_content_type, context=None):
    try:
        return decode_request(request_body, request_content_type)
    except Exception as err:
        if context is None:
            raise
        return _refusal(err)


def decode_request(request_body, request_content_type) -> Request:
    """input_fn's work: the request's images or tensor, or a RequestError saying what is wrong."""
    media_type, params = _parse_media_type(request_content_type, "Content-Type")
    if media_type not in SUPPORTED_TYPES:
        raise UnsupportedContentTypeError(
            f"unsupported content type {media_type!r}; use one of {', '.join(SUPPORTED_TYPES)}"
        )
    top_k = _parse_top_k(params["top_k"], "content type") if "top_k" in params else None
    data = _body_bytes(request_body, media_type)
    if not data:
        raise RequestError("the request body is empty")
    max_bytes = _limit(MAX_BODY_BYTES_ENV, DEFAULT_MAX_BODY_BYTES)
    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            f"the request body is {len(data)} bytes, over the limit of {max_bytes} bytes "
            f"({MAX_BODY_BYTES_ENV})"
        )
    if media_type in IMAGE_TYPES:
        return Request(images=decode_images([(data, "the image")]), top_k=top_k)
    if media_type == JSON_TYPE:
        strings, body_top_k = _parse_json(data)
        images = decode_images(
            [
                (_decode_base64(text, f"instance {i}"), f"instance {i}")
                for i, text in enumerate(strings)
            ]
        )
        return Request(images=images, top_k=body_top_k if body_top_k is not None else top_k)
    request = _parse_npy(data)
    return Request(images=request.images, tensor=request.tensor, top_k=top_k)


def _batch(request: Request, model: Classifier) -> torch.Tensor:
    if request.tensor is None:
        return torch.stack([model.transform(image) for image in request.images])
    size = model.settings["image_size"]
    if tuple(request.tensor.shape[1:]) != (3, size, size):
        got = "x".join(str(n) for n in request.tensor.shape)
        raise RequestError(
            f"preprocessed tensors must be Nx3x{size}x{size} for this model "
            f"(image_size {size}), got {got}"
        )
    return request.tensor


def predict_fn(input_data, model: Classifier, context=None):
    if isinstance(input_data, Refusal):
        return input_data
    try:
        return predict(input_data, model)
    except Exception as err:
        if context is None:
            raise
        return _refusal(err)


def predict(input_data: Request, model: Classifier) -> dict:
    """predict_fn's work: the top-k classes of every image of a decoded request."""
    if not isinstance(input_data, Request):
        raise TypeError(f"predict_fn expects what input_fn returns, got {type(input_data)}")
    batch = _batch(input_data, model)
    k = min(input_data.top_k or model.default_top_k, len(model.class_names))
    with torch.inference_mode():
        logits = model.runner(batch)
        probabilities, indices = torch.softmax(logits.float(), dim=1).topk(k, dim=1)
    return {
        "predictions": [
            [
                {"label": model.class_names[index], "index": index, "probability": probability}
                for probability, index in zip(row_p, row_i, strict=True)
            ]
            for row_p, row_i in zip(probabilities.tolist(), indices.tolist(), strict=True)
        ]
    }


def output_fn(prediction, accept: str | None, context=None):
    """(JSON text, its content type); the toolkit sends the type as the response header."""
    if not isinstance(prediction, Refusal):
        try:
            return encode_response(prediction, accept)
        except Exception as err:
            if context is None:
                raise
            prediction = _refusal(err)
    if context is not None:
        context.set_response_status(code=prediction.status_code, phrase=prediction.phrase)
    return prediction.body(), RESPONSE_TYPE


def encode_response(prediction: dict, accept: str | None) -> tuple[str, str]:
    """output_fn's work: the prediction as JSON, if the client accepts JSON."""
    accepted = [
        part.split(";")[0].strip().lower() for part in (accept or "").split(",") if part.strip()
    ]
    if accepted and not any(t in (RESPONSE_TYPE, "application/*", "*/*") for t in accepted):
        raise UnsupportedAcceptError(
            f"unsupported Accept {accept!r}; this endpoint answers {RESPONSE_TYPE}"
        )
    return json.dumps(prediction), RESPONSE_TYPE


class ResponseContext:
    """What the handlers use of a model server's request context: the status they set.

    The signature is TorchServe's (`ts.context.Context.set_response_status`).
    """

    def __init__(self):
        self.status = 200
        self.phrase = "OK"

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.status, self.phrase = code, phrase


def answer(model: Classifier, body, content_type: str | None, accept: str | None):
    """(status, JSON text, content type) for one request: the handlers as a model server calls
    them, so a refusal or a fault is answered, never raised."""
    context = ResponseContext()
    try:
        data = input_fn(body, content_type, context)
        prediction = predict_fn(data, model, context)
        text, response_type = output_fn(prediction, accept, context)
    except Exception as err:  # the handlers answer their own errors; this is the last guard
        refusal = _refusal(err)
        return refusal.status_code, refusal.body(), RESPONSE_TYPE
    return context.status, text, response_type
