"""The endpoint end to end over HTTP, for bench/inference_latency.py: Ray Serve and TorchServe.

- `ray-serve-http`: the model's Ray Serve application as AWS's Ray Serve DLC starts it
  (pipeline/local/ray_endpoint.py: `serve run config.yaml` behind the 8080 adapter stand-in)
  under --ray-python, a venv that mirrors the image (`bin/container-env ray-serve`);
- `torchserve-http`: TorchServe 0.12 and sagemaker-pytorch-inference as the PyTorch inference
  DLC starts them (tests/helpers/serving_stack.py, as the parity tier starts them) under
  --torchserve-python (`bin/container-env inference`), with the environment a `--serving
  torchserve` definition deploys (one worker); needs Java 11+.

Per stack: p50 / p95 of one-image requests (POST /invocations, the JPEG the in-process modes
get), the stacks and the fastest in-process mode taking turns, so that a busy machine slows
all of them alike; the p50 as a multiple of that mode's p50 in the same rounds (`x_fastest`);
then requests per second with --clients clients sending one-image requests at once. Each
stack serves with the mode `auto` picks in its own torch.
"""

from __future__ import annotations

import contextlib
import http.client
import sys
import tempfile
import threading
import time
from pathlib import Path

import common

from dogbreed_jobs import contract
from pipeline.local.ray_endpoint import RayEndpoint

COLUMNS = ("variant", "p50_ms", "p95_ms", "req_s", "clients", "fastest_p50_ms", "x_fastest")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("over HTTP (each stack runs only when its Python is given)")
    group.add_argument("--ray-python", help="the Ray Serve image's venv Python")
    group.add_argument("--torchserve-python", help="the PyTorch inference image's venv Python")
    group.add_argument("--clients", type=int, default=4, help="concurrent clients")
    group.add_argument("--http-requests", type=int, default=8, help="requests per client")


def _post(port: int, body: bytes) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    started = time.perf_counter()
    try:
        connection.request("POST", "/invocations", body, {"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    if response.status != 200 or not answer.startswith(b'{"predictions"'):
        raise RuntimeError(f"the endpoint answered {response.status}: {answer[:300]!r}")
    return time.perf_counter() - started


def _throughput(port: int, body: bytes, clients: int, each: int) -> float:
    """Requests per second, `clients` threads each sending `each` requests back to back."""
    errors: list[BaseException] = []

    def client() -> None:
        try:
            for _ in range(each):
                _post(port, body)
        except BaseException as err:  # reported below, in the main thread
            errors.append(err)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return clients * each / (time.perf_counter() - started)


@contextlib.contextmanager
def _stacks(model_dir: Path, args):
    """name -> port of every stack whose Python was given, stopped on the way out."""
    with contextlib.ExitStack() as stack:
        ports = {}
        if args.ray_python:
            endpoint = stack.enter_context(RayEndpoint(model_dir, args.ray_python))
            ports["ray-serve-http"] = endpoint.port
        if args.torchserve_python:
            sys.path.insert(0, str(common.REPO / "tests"))
            from helpers.definitions import torchserve_environment
            from helpers.serving_stack import TorchServe

            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ts-bench-")))
            server = TorchServe(
                model_dir, torchserve_environment(), root, python=args.torchserve_python
            )
            stack.callback(server.stop)
            ports["torchserve-http"] = server.port
        yield ports


def run(model_dir: Path, body: bytes, args, fastest) -> list[dict]:
    """One record per stack; none when no stack's Python is given. `fastest()` answers `body`
    in-process with the fastest mode and returns its seconds."""
    if not (args.ray_python or args.torchserve_python):
        return []
    with _stacks(model_dir, args) as ports:
        return measure(ports, body, args, fastest)


def measure(ports: dict[str, int], body: bytes, args, fastest) -> list[dict]:
    """A record per served stack (name -> port of its /invocations): `args` gives repeat,
    warmup, clients and http_requests; `fastest()` is the in-process reference."""
    latency = {name: [] for name in ports}
    reference = []
    for port in ports.values():
        for _ in range(args.warmup):
            _post(port, body)
    for _ in range(args.repeat):  # interleaved with the in-process reference
        for name, port in ports.items():
            latency[name].append(_post(port, body))
        reference.append(fastest())
    reference_p50 = 1e3 * contract.percentile(reference, 0.50)
    records = []
    for name, port in ports.items():
        p50 = 1e3 * contract.percentile(latency[name], 0.50)
        record = {
            "bench": "inference-http",
            "variant": name,
            "request_image": "500x375 JPEG",
            "p50_ms": round(p50, 2),
            "p95_ms": round(1e3 * contract.percentile(latency[name], 0.95), 2),
            "req_s": round(_throughput(port, body, args.clients, args.http_requests), 2),
            "clients": args.clients,
            "fastest_p50_ms": round(reference_p50, 2),
            "x_fastest": round(p50 / reference_p50, 2),
            "repeat": args.repeat,
            # The host's torch is not the stack's: left out.
            **{k: v for k, v in common.machine().items() if not k.startswith("torch")},
        }
        records.append(common.emit(record))
    return records


def print_table(records: list[dict]) -> None:
    if records:
        common.print_table(
            records, COLUMNS, "over HTTP (x_fastest: p50 / the fastest mode's in the same rounds)"
        )
