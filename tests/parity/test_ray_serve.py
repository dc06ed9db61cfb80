"""The model a local execution trained, served as AWS's Ray Serve DLC serves it.

`bin/container-env ray-serve` builds a venv of the image's pins (Python 3.13, ray[serve]
2.57.0, torch 2.10.0, numpy 2.5.2, Pillow 12.3.0; container/ray-serve.txt) and `make test`
hands its interpreter over in DOGBREED_RAY_SERVE_PYTHON. TrainModel's model.tar.gz from the
parity execution (conftest.execution: the exported definition under the training toolkit) is
extracted as the image extracts it to /opt/ml/model, started as its entrypoint starts it (the
model folder and code/ on PYTHONPATH, Ray and Serve, `serve run config.yaml`;
pipeline/local/ray_entrypoint.py) and reached through the stand-in for its 8080 adapter
(pipeline/local/sagemaker_adapter.py), with the request corpus of helpers/request_corpus.py.
One Ray start for the module.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.container_envs import RAY_SERVE, python_of
from helpers.paths import ROOT
from helpers.request_corpus import (
    CASE_NAMES,
    IMAGE_TOLERANCE,
    cases,
    check_reply,
    in_process_answers,
    plant_fault,
    same_answer,
)
from helpers.serving_stack import Reply, _http, extract

from dogbreed_jobs import contract
from pipeline.local.ray_endpoint import RayEndpoint

# AWS's adapter gives a request without a Content-Type `application/json` before our handlers
# see it (TorchServe passes none, which they refuse with a 415): the body, a JPEG, is then
# malformed JSON.
ADAPTER_DEFAULTS_TO_JSON = {"no-content-type": {"status": 400, "words": "malformed json"}}


@pytest.fixture(scope="module")
def ray_python() -> str:
    return python_of(RAY_SERVE)


@pytest.fixture(scope="module")
def trained(execution, tmp_path_factory):
    """(TrainModel's model.tar.gz as the endpoint gets it, extracted; one of the execution's
    test images)."""
    outcome, store, _ = execution
    container = outcome.step("CreateModel-CreateModel")["Properties"]["PrimaryContainer"]
    assert container["Image"].endswith("/ray:serve-ml-sagemaker-cpu-v1")
    model_dir = extract(
        store.path(container["ModelDataUrl"]), tmp_path_factory.mktemp("opt-ml") / "model"
    )
    image = sorted((Path(outcome.record["LocalOverrides"]["Input"]) / "test").rglob("*.jpg"))[0]
    return model_dir, image.read_bytes()


@pytest.fixture(scope="module")
def reference(trained):
    model_dir, _ = trained
    return in_process_answers(model_dir)


@pytest.fixture(scope="module")
def corpus(trained):
    return {
        case.name: dataclasses.replace(case, **ADAPTER_DEFAULTS_TO_JSON.get(case.name, {}))
        for case in cases(trained[1])
    }


@pytest.fixture(scope="module")
def endpoint(trained, ray_python, reference):
    """The image's stack on the trained model, its handlers failing for top_k=7."""
    model_dir, _ = trained
    plant_fault(model_dir)
    server = RayEndpoint(model_dir, ray_python, num_cpus=len(os.sched_getaffinity(0)))
    yield server
    server.stop()


def invoke(server: RayEndpoint, body: bytes, headers: dict[str, str]) -> Reply:
    return _http(server.port, "POST", "/invocations", body, headers)


def test_the_venv_has_the_images_python_and_pins(ray_python):
    probe = subprocess.run(
        [ray_python, "-c", "import sys, ray, torch, numpy, PIL; print(sys.version_info[:2], "
         "ray.__version__, torch.__version__.split('+')[0], numpy.__version__, PIL.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert probe == "(3, 13) 2.57.0 2.10.0 2.5.2 12.3.0"


def test_the_model_carries_its_ray_serve_application_and_no_requirements(trained):
    model_dir, _ = trained
    config = (model_dir / contract.RAY_SERVE_CONFIG).read_text()
    assert "import_path: dogbreed_jobs.ray_app:build" in config
    assert "route_prefix: /" in config
    # The entrypoint would pip-install it at start: no network isolation then.
    assert not (model_dir / "code" / "requirements.txt").exists()


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_request_gets_its_status_and_only_our_json(endpoint, corpus, reference, name):
    case = corpus[name]
    reply = invoke(endpoint, case.body, case.headers())
    expected = reference(case) if case.status == 200 else None
    check_reply(reply, case, expected, IMAGE_TOLERANCE, endpoint.log_text)


def test_a_good_request_after_the_corpus_is_answered_as_before(endpoint, corpus, reference):
    case = corpus["jpeg"]
    reply = invoke(endpoint, case.body, case.headers())
    assert reply.status == 200
    assert same_answer(json.loads(reply.body), reference(case), IMAGE_TOLERANCE)


def test_the_adapter_pings_serves_health_and_defaults_the_content_type(endpoint, corpus):
    assert _http(endpoint.port, "GET", "/ping") == Reply(200, "OK", "text/plain; charset=utf-8",
                                                         b"")  # fmt: skip
    # No Content-Type: the adapter says application/json, which the handlers then parse.
    reply = invoke(endpoint, b'{"b64": "' + b"A" * 8 + b'"}', {})
    assert reply.status == 400 and "not an image" in json.loads(reply.body)["error"]


def test_one_replica_loads_the_model_once_with_every_cpu_as_torch_threads(endpoint):
    found = re.findall(r"intra-op threads: (\d+)", endpoint.log_text())
    assert found == [str(len(os.sched_getaffinity(0)))], endpoint.log_text()[-3000:]


def test_the_http_benchmark_measures_the_served_endpoint(endpoint, corpus):
    """bench/http_latency.py's measuring, smoke-tested on this module's Ray start (shape only:
    timings are never asserted)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import http_latency

    args = argparse.Namespace(repeat=2, warmup=1, clients=2, http_requests=2)
    (record,) = http_latency.measure(
        {"ray-serve-http": endpoint.port}, corpus["jpeg"].body, args, fastest=lambda: 0.001
    )
    assert record["variant"] == "ray-serve-http" and record["clients"] == 2
    assert record["p95_ms"] >= record["p50_ms"] > 0 and record["req_s"] > 0
    assert record["fastest_p50_ms"] == 1.0
    assert record["x_fastest"] == pytest.approx(record["p50_ms"], rel=0.01)
