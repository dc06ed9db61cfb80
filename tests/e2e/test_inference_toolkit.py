"""The endpoint under AWS's own serving code: one request corpus, four serving stacks.

Each stack serves the same model.tar.gz with the container environment a definition built with
`--serving torchserve` deploys it with (CreateModel's, the same as RegisterModel's):

- `torchserve`: TorchServe 0.12.0 started as sagemaker-pytorch-inference 2.0.25 starts it in the
  PyTorch inference DLC (skipped without Java 11+);
- `torchserve-worker`: TorchServe's Python worker with the toolkit's handler, driven as its
  frontend drives it (no Java);
- `serve-local`: this project's imitation of the endpoint;
- `torchserve-image`: TorchServe as above, in the venv that mirrors the inference image
  (`bin/container-env inference`: Python 3.12, torch 2.6), serving weights this newer torch
  saved, as the endpoint serves what the 2.13 training image saved.

The request corpus and what each request must get: helpers/request_corpus.py (the Ray Serve
image is held to the same in tests/parity/test_ray_serve.py).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from pathlib import Path

import pytest
from helpers.container_envs import INFERENCE, python_of
from helpers.definitions import torchserve_environment
from helpers.request_corpus import (
    CASE_NAMES,
    IMAGE_TOLERANCE,
    MAX_BODY_BYTES,
    MAX_IMAGES,
    MAX_JSON_DEPTH,
    Case,
    cases,
    check_reply,
    faulty_tarball,
    in_process_answers,
    same_answer,
)
from helpers.serving_stack import (
    TORCHSERVE_MAX_REQUEST_SIZE,
    ServeLocal,
    TorchServe,
    Worker,
    extract,
    java_version,
)

from dogbreed_jobs import inference

# The environment a --serving torchserve definition deploys the model with.
registered_environment = functools.cache(torchserve_environment)


def cpus() -> int:
    return len(os.sched_getaffinity(0))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def jpeg(model_artifact) -> bytes:
    first = sorted((model_artifact.data_root / "test").iterdir())[0]
    return sorted(first.glob("*.jpg"))[0].read_bytes()


@pytest.fixture(scope="module")
def corpus(jpeg) -> dict[str, Case]:
    return {case.name: case for case in cases(jpeg)}


@pytest.fixture(scope="module")
def reference(model_artifact):
    return in_process_answers(model_artifact.model_dir)


# The toolkit decodes an application/json body as UTF-8 before any handler runs
# (sagemaker_inference/transformer.py:147-148, in Transformer.transform): bytes that are not
# UTF-8 fail there, and handle_error answers 500 with the traceback. Our code never sees them.
TOOLKIT_DECODES_JSON_FIRST = {"json-not-utf-8"}


@pytest.fixture(scope="module")
def served_tarball(model_artifact, tmp_path_factory) -> Path:
    """model.tar.gz whose handlers fail for top_k=7, deep inside predict_fn."""
    return faulty_tarball(
        model_artifact.model_dir, tmp_path_factory.mktemp("served") / "model.tar.gz"
    )


@pytest.fixture(
    scope="module", params=["serve-local", "torchserve-worker", "torchserve", "torchserve-image"]
)
def stack(request, served_tarball, tmp_path_factory):
    environment = registered_environment()
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "serve-local":
        server = ServeLocal(served_tarball, environment)
    elif request.param == "torchserve-worker":
        server = Worker(extract(served_tarball, root / "opt-ml-model"), environment, root)
    else:
        version = java_version()
        if version is None or version < 11:
            pytest.skip(f"TorchServe's frontend needs Java 11 or later (found: {version})")
        # torchserve-image: the image's Python and torch load weights this torch saved.
        python = python_of(INFERENCE) if request.param == "torchserve-image" else sys.executable
        server = TorchServe(
            extract(served_tarball, root / "opt-ml-model"), environment, root, python=python
        )
    server.tolerance = IMAGE_TOLERANCE if request.param == "torchserve-image" else 1e-4
    yield server
    server.stop()


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_request_gets_its_status_and_only_our_json(stack, corpus, reference, name, request):
    case = corpus[name]
    if name in TOOLKIT_DECODES_JSON_FIRST and stack.kind != "serve-local":
        request.applymarker(
            pytest.mark.xfail(reason="the toolkit decodes JSON as UTF-8 first", strict=True)
        )
    reply = stack.invoke(case.body, case.headers())
    expected = reference(case) if case.status == 200 else None
    check_reply(reply, case, expected, stack.tolerance, stack.log_text)


def test_a_good_request_after_the_corpus_is_answered_as_before(stack, corpus, reference):
    case = corpus["jpeg"]
    reply = stack.invoke(case.body, case.headers())
    assert reply.status == 200
    assert same_answer(json.loads(reply.body), reference(case), stack.tolerance)


def test_the_limits_fit_under_what_torchserve_lets_through():
    # Bodies between our limit and TorchServe's get our own 413; over both, TorchServe's.
    assert MAX_BODY_BYTES < TORCHSERVE_MAX_REQUEST_SIZE
    assert inference.DEFAULT_MAX_BODY_BYTES == MAX_BODY_BYTES
    assert inference.DEFAULT_MAX_BATCH == MAX_IMAGES
    assert inference.MAX_JSON_DEPTH == MAX_JSON_DEPTH


def test_torchserve_starts_the_registered_number_of_workers(stack):
    if stack.kind != "torchserve":
        pytest.skip("the number of workers is TorchServe's frontend's decision")
    workers = registered_environment()["SAGEMAKER_MODEL_SERVER_WORKERS"]
    assert workers == "1"
    assert len(stack.workers()) == 1


def test_each_worker_gets_the_cpus_divided_among_the_workers(stack):
    if stack.kind == "serve-local":
        pytest.skip("serve-local is one process, not a model-server worker")
    workers = int(registered_environment()["SAGEMAKER_MODEL_SERVER_WORKERS"])
    expected = max(1, cpus() // workers)
    found = re.findall(r"intra-op threads: (\d+)", stack.log_text())
    assert found == [str(expected)], stack.log_text()[-3000:]
