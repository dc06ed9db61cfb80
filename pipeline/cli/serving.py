"""`serve-local` and `predict`: the SageMaker endpoint contract on this machine.

- `serve-local` serves a model deployed by `run-local` (its record in
  `<store>/endpoints/<name>.json`) or any `model.tar.gz` (`--model-data`), behind the SageMaker
  endpoint contract (pipeline/local/serve.py).
- `predict` sends image files to that server (`--url`, `--local`) or to a real SageMaker
  endpoint (`sagemaker-runtime` InvokeEndpoint, through the standard boto3 environment, so
  AWS_ENDPOINT_URL reaches a test double) and prints the top breeds per image. It sends the
  file's bytes, never a URL, and fetches nothing itself.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import logging
import os
import re
import signal
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pipeline.cli.argtypes as argtypes
import pipeline.cli.options as options
from pipeline import aws
from pipeline.errors import CliError, UsageError, one_line
from pipeline.local import serve
from pipeline.local.store import Store, StoreError

log = logging.getLogger("pipeline.cli.serving")

DEFAULT_LOCAL_URL = f"http://{serve.DEFAULT_HOST}:{serve.DEFAULT_PORT}"
# SageMaker gives a real-time endpoint 60 s to answer; the local server gets the same.
INVOKE_TIMEOUT_SECONDS = 60
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))
_OTHER_FORMATS = (
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"RIFF", "WebP or another RIFF file"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def local_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an http(s) URL of a serve-local server (e.g. {DEFAULT_LOCAL_URL})"
        )
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    return text


def _known_endpoints(store: Path) -> list[str]:
    folder = store / "endpoints"
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.glob("*.json") if path.is_file())


def _store_path(store: Path, s3_uri: str) -> Path | None:
    try:
        return Store(store).path(s3_uri)
    except StoreError:
        return None


def resolve_endpoint(store: Path, name: str | None) -> tuple[Path, dict, str]:
    """(model data path, the container environment, the endpoint name) from a record."""
    known = _known_endpoints(store)
    hint = "run `dogbreed-pipeline run-local` to deploy one, or pass --model-data PATH/model.tar.gz"
    if name is None:
        if not known:
            raise UsageError(f"no endpoints in {store / 'endpoints'}: {hint}")
        if len(known) > 1:
            raise UsageError(
                f"{store} holds several endpoints: pick one with --endpoint ({', '.join(known)})"
            )
        name = known[0]
    record_path = store / "endpoints" / f"{name}.json"
    if not record_path.is_file():
        listed = ", ".join(known) if known else "none"
        raise UsageError(
            f"no endpoint {name!r} in {store / 'endpoints'} (known endpoints: {listed}); "
            f"check --endpoint and --store, or {hint}"
        )
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read the endpoint record {record_path}: {exc}") from None
    if not isinstance(record, dict):
        raise UsageError(f"the endpoint record {record_path} is not a JSON object")
    raw = record.get("ModelDataPath")
    model_data = Path(raw) if raw else _store_path(store, record.get("ModelDataUrl", ""))
    if model_data is None:
        raise UsageError(f"the endpoint record {record_path} names no ModelDataPath")
    if not model_data.is_absolute():
        model_data = store / model_data
    if not model_data.exists():
        raise UsageError(
            f"endpoint {name}'s model data {model_data} is missing (was the store moved or "
            "cleaned?); run `dogbreed-pipeline run-local` again to deploy it"
        )
    environment = record.get("Environment") or {}
    if not isinstance(environment, dict):
        raise UsageError(f"the endpoint record {record_path} has a malformed Environment")
    return model_data, {str(k): str(v) for k, v in environment.items()}, name


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve_until_signal(endpoint) -> None:
    def stop(signum, frame):
        if endpoint.stopping:
            log.info("stopping now")
        else:
            log.info(
                "%s: finishing the requests in progress, then stopping", signal.Signals(signum).name
            )
        endpoint.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        endpoint.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve_with_ray(model_data: Path, environment: dict, label: str, args) -> int:
    """serve-local --ray-python: the model's Ray Serve application as the Ray Serve DLC runs
    it (pipeline/local/ray_endpoint.py), until SIGINT or SIGTERM."""
    from pipeline.local.ray_endpoint import RayEndpoint, RayEndpointError

    stopped = threading.Event()
    with tempfile.TemporaryDirectory(prefix="dogbreed-serve-") as folder:
        try:
            model_dir = serve.extract_model(model_data, Path(folder) / "model")
        except serve.ServeError as exc:
            raise UsageError(str(exc)) from None
        started = time.perf_counter()
        log.info("starting Ray Serve on %s with %s", label, args.ray_python)
        try:
            endpoint = RayEndpoint(
                model_dir, str(args.ray_python), port=args.port, env=environment, host=args.host
            )
        except RayEndpointError as exc:
            log.info("what Ray Serve printed:\n%s", exc.log)
            raise UsageError(f"Ray Serve did not start: {exc.reason}") from None
        except OSError as exc:
            raise UsageError(f"Ray Serve did not start: {exc}") from None
        try:
            log.info(
                "serving %s on %s (GET /ping, POST /invocations) through Ray Serve, ready in "
                "%.1f s; Ctrl-C stops",
                label,
                endpoint.url,
                time.perf_counter() - started,
            )
            previous = {
                sig: signal.signal(sig, lambda signum, frame: stopped.set())
                for sig in (signal.SIGINT, signal.SIGTERM)
            }
            try:
                while not stopped.wait(0.5):
                    pass
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        finally:
            endpoint.stop()
    log.info("stopped")
    return 0


def serve_local(args) -> int:
    if args.model_data is not None:
        model_data, environment, label = args.model_data, {}, str(args.model_data)
        if not model_data.exists():
            raise UsageError(f"--model-data {model_data} does not exist")
    else:
        model_data, environment, name = resolve_endpoint(args.store, args.endpoint)
        label = f"endpoint {name} ({model_data})"
    if args.ray_python is not None:
        return _serve_with_ray(model_data, environment, label, args)
    # The serving container runs with the model's environment; so does this process.
    os.environ.update(environment)
    endpoint = serve.LocalEndpoint(
        model_data,
        host=args.host,
        port=args.port,
        threads=args.threads,
        max_body_bytes=args.max_body_bytes,
        program=environment.get("SAGEMAKER_PROGRAM") or serve.DEFAULT_PROGRAM,
    )
    try:
        with endpoint:
            endpoint.bind()
            if not _is_loopback(args.host):
                log.warning(
                    "listening on %s: anyone who can reach this machine can call the model "
                    "(there is no authentication)",
                    args.host,
                )
            started = time.perf_counter()
            log.info("loading %s", label)
            endpoint.load()
            log.info(
                "serving %s on %s (GET /ping, POST /invocations), loaded in %.1f s; Ctrl-C stops",
                label,
                endpoint.url,
                time.perf_counter() - started,
            )
            _serve_until_signal(endpoint)
    except serve.ServeError as exc:
        raise UsageError(str(exc)) from None
    log.info("stopped")
    return 0


def content_type_of(path: Path, data: bytes) -> str:
    """image/jpeg or image/png from the file's first bytes (its name may say anything)."""
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    found = next((name for magic, name in _OTHER_FORMATS if data.startswith(magic)), None)
    what = f"a {found} file" if found else "not a JPEG or PNG file"
    raise UsageError(f"{path}: {what}; predict sends JPEG or PNG images: convert it first")


def read_image(argument: str) -> tuple[Path, bytes, str]:
    """(path, bytes, content type) of an IMAGE argument, refusing anything but a local file."""
    if _URL_RE.match(argument):
        raise UsageError(
            f"{argument!r} is a URL: IMAGE must be a local file (predict never sends or "
            "fetches URLs); download the image first"
        )
    path = Path(argument)
    if not path.exists():
        raise UsageError(f"{argument}: no such file")
    if not path.is_file():
        raise UsageError(f"{argument}: not a regular file; give image files")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {argument}: {exc.strerror}") from None
    if not data:
        raise UsageError(f"{argument}: the file is empty")
    return path, data, content_type_of(path, data)


def _invocations_url(url: str) -> str:
    base = url.rstrip("/")
    return base if base.endswith("/invocations") else f"{base}/invocations"


def _message(body: bytes) -> str:
    try:
        document = json.loads(body)
        if isinstance(document, dict) and "error" in document:
            return str(document["error"])
    except (ValueError, UnicodeDecodeError):
        pass
    return " ".join(body.decode("utf-8", "replace").split())[:500] or "no message"


def invoke_http(url: str, body: bytes, content_type: str, image: Path) -> bytes:
    """POST to a serve-local server; no proxies and no redirects, only that server."""
    target = urlsplit(_invocations_url(url))
    connection_class = (
        http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(target.hostname, target.port, timeout=INVOKE_TIMEOUT_SECONDS)
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    try:
        connection.request("POST", target.path or "/invocations", body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
    except ConnectionRefusedError:
        raise UsageError(
            f"cannot reach {url}: nothing listens there; start `dogbreed-pipeline serve-local` "
            "or fix --url"
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise UsageError(f"cannot reach {url}: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        connection.close()
    if response.status >= 500:
        raise CliError(f"the endpoint failed on {image} ({response.status}): {_message(answer)}")
    if response.status >= 400:
        raise UsageError(f"the endpoint refused {image} ({response.status}): {_message(answer)}")
    return answer


def invoke_sagemaker(client, endpoint: str, body: bytes, content_type: str, image: Path) -> bytes:
    """InvokeEndpoint; the container's own 4xx/5xx come back as a ModelError."""
    from botocore.exceptions import ClientError

    try:
        response = client.invoke_endpoint(
            EndpointName=endpoint, ContentType=content_type, Accept="application/json", Body=body
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ModelError":
            raise  # cli.main maps it through pipeline.errors
        status = exc.response.get("OriginalStatusCode") or 0
        message = one_line(
            exc.response.get("OriginalMessage") or exc.response["Error"].get("Message", "")
        )
        if 400 <= int(status) < 500:
            raise UsageError(f"endpoint {endpoint} refused {image} ({status}): {message}") from None
        raise CliError(
            f"endpoint {endpoint} failed on {image} ({status or 'error'}): {message}"
        ) from None
    return response["Body"].read()


def parse_predictions(answer: bytes, image: Path) -> list[dict]:
    """The one image's top-k list from `{"predictions": [[{"label", "index", "probability"}]]}`."""
    try:
        document = json.loads(answer)
        rows = document["predictions"]
        row = rows[0]
        predictions = [
            {
                "label": str(p["label"]),
                "index": int(p["index"]),
                "probability": float(p["probability"]),
            }
            for p in row
        ]
    except (ValueError, UnicodeDecodeError, KeyError, IndexError, TypeError):
        shown = " ".join(answer[:200].decode("utf-8", "replace").split())
        raise CliError(
            f"the endpoint's answer for {image} is not a prediction list: {shown!r}"
        ) from None
    return predictions


def format_predictions(image: Path, predictions: list[dict]) -> str:
    width = max([len("BREED"), *(len(p["label"]) for p in predictions)])
    lines = [str(image), f"  {'#':>2}  {'BREED':<{width}}  PROBABILITY"]
    for rank, prediction in enumerate(predictions, start=1):
        lines.append(
            f"  {rank:>2}  {prediction['label']:<{width}}  {prediction['probability'] * 100:10.2f}%"
        )
    return "\n".join(lines)


def predict(args) -> int:
    remote = args.url is None and not args.local
    if remote and args.endpoint is None:
        raise UsageError(
            "predict needs --endpoint NAME (a SageMaker endpoint) or --url / --local "
            "(a serve-local server)"
        )
    # Every file is checked before anything is sent, so a typo in the last name costs nothing.
    images = [read_image(argument) for argument in args.images]
    if remote:
        client = aws.connect(region=args.region, profile=args.profile).client("sagemaker-runtime")
    results = []
    for path, data, content_type in images:
        if args.top_k is not None:
            content_type = f"{content_type}; top_k={args.top_k}"
        if remote:
            answer = invoke_sagemaker(client, args.endpoint, data, content_type, path)
        else:
            answer = invoke_http(args.url or DEFAULT_LOCAL_URL, data, content_type, path)
        results.append((path, parse_predictions(answer, path)))
    if args.json:
        document = [{"image": str(path), "predictions": preds} for path, preds in results]
        print(json.dumps(document, indent=2))
    else:
        print("\n\n".join(format_predictions(path, preds) for path, preds in results))
    return 0


def add_serve_local(parser) -> None:
    parser.description = (
        "Serve a model the way SageMaker's PyTorch container does (GET /ping, "
        "POST /invocations), from an endpoint that run-local deployed or from a model.tar.gz. "
        "The model's own code/inference.py answers the requests."
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--endpoint",
        type=argtypes.endpoint_name,
        help="endpoint deployed by run-local (default: the only one in the store)",
    )
    source.add_argument(
        "--model-data",
        type=Path,
        metavar="MODEL_TAR_GZ",
        help="serve this model.tar.gz (or extracted model folder) instead of an endpoint",
    )
    options.add_store(parser, "run-local's store")
    parser.add_argument(
        "--host",
        default=serve.DEFAULT_HOST,
        help=f"address to listen on (default: {serve.DEFAULT_HOST}, this machine only)",
    )
    parser.add_argument(
        "--port",
        type=argtypes.whole_number(0, 65535, what="port"),
        default=serve.DEFAULT_PORT,
        help=f"port (default: {serve.DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--threads",
        type=argtypes.whole_number(1, 256, what="thread count"),
        default=serve.DEFAULT_THREADS,
        help=f"requests handled at once (default: {serve.DEFAULT_THREADS})",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=argtypes.whole_number(1, what="byte count"),
        default=serve.DEFAULT_MAX_BODY_BYTES,
        metavar="BYTES",
        help=f"largest request body (default: {serve.DEFAULT_MAX_BODY_BYTES}, SageMaker's "
        "real-time limit)",
    )
    parser.add_argument(
        "--ray-python",
        type=Path,
        metavar="PYTHON",
        help="serve through Ray Serve as AWS's Ray Serve image does, with this Python (one "
        "with ray[serve] and torch, e.g. the venv `bin/container-env ray-serve` builds); "
        "--threads and --max-body-bytes then do not apply",
    )
    parser.set_defaults(handler=serve_local)


def add_predict(parser) -> None:
    parser.description = (
        "Send JPEG or PNG files to an endpoint and print the top breeds for each. "
        "With --url or --local it calls a serve-local server; otherwise the SageMaker "
        "endpoint --endpoint through the standard AWS environment."
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG or PNG file")
    parser.add_argument("--endpoint", type=argtypes.endpoint_name, help="SageMaker endpoint name")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", type=local_url, help="a serve-local server's URL")
    target.add_argument(
        "--local", action="store_true", help=f"the serve-local server at {DEFAULT_LOCAL_URL}"
    )
    parser.add_argument(
        "--top-k",
        type=argtypes.whole_number(1, what="count"),
        metavar="K",
        help="breeds per image (default: the model's setting)",
    )
    parser.add_argument("--json", action="store_true", help="print the predictions as JSON")
    options.add_aws(parser)
    parser.set_defaults(handler=predict)


PARSERS = {"serve-local": add_serve_local, "predict": add_predict}
