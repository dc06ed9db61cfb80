"""The endpoint's Ray Serve application: a thin HTTP front end over dogbreed_jobs.inference.

AWS's Ray Serve DLC extracts model.tar.gz to /opt/ml/model, puts /opt/ml/model and
/opt/ml/model/code on PYTHONPATH and runs `serve run /opt/ml/model/config.yaml`; that file
(written by model.save_artifact) imports `build` below with `replicas` as its argument. Its
adapter on port 8080 forwards `POST /invocations` to this application's route `/` with the
request's Content-Type and Accept (application/json when missing) and passes our status and
body back unchanged.

Every request goes through the same handlers as under TorchServe (`inference.answer`:
input_fn, predict_fn and output_fn with a request context), so decoding, limits, top-k and
error answers exist once: a refusal is its 4xx with `{"error": ...}` alone, a fault a 500
with a generic error and the traceback in the replica's log, and the next request is
answered as before.

Sizing: each replica loads the model once, in `__init__`, and runs every forward pass on one
thread of its own, whose torch intra-op threads are the vCPUs divided by the replicas (set on
that thread: OpenMP keeps the count per thread, and Ray starts its workers with
OMP_NUM_THREADS=1, which a new thread would inherit) and which Ray's accounting reserves as
the replica's CPUs. One forward pass runs at a time in a replica; requests queue in Ray Serve
meanwhile, and the event loop stays free for health checks.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import torch
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from dogbreed_jobs import inference
from dogbreed_jobs.cpus import available_cpus

# Ray Serve's own logger: what a replica logs there reaches the replica's log and `serve run`.
log = logging.getLogger("ray.serve")
# The image sets SM_MODEL_DIR=/opt/ml/model, where the entrypoint extracts model.tar.gz.
MODEL_DIR_ENV = "SM_MODEL_DIR"
DEFAULT_MODEL_DIR = "/opt/ml/model"


def threads_per_replica(replicas: int) -> int:
    return max(1, available_cpus() // replicas)


def _size_torch(threads: int) -> None:
    torch.set_num_threads(threads)
    log.info("intra-op threads: %d", torch.get_num_threads())


@serve.deployment(name="DogBreedClassifier")
class Classifier:
    def __init__(self, replicas: int):
        # One thread answers every request, sized as it starts.
        self.worker = ThreadPoolExecutor(
            max_workers=1, initializer=_size_torch, initargs=(threads_per_replica(replicas),)
        )
        model_dir = os.environ.get(MODEL_DIR_ENV, DEFAULT_MODEL_DIR)
        self.model = self.worker.submit(inference.load_classifier, model_dir).result()

    async def __call__(self, request: Request) -> Response:
        body = await request.body()
        status, text, content_type = await asyncio.get_running_loop().run_in_executor(
            self.worker,
            inference.answer,
            self.model,
            body,
            request.headers.get("content-type"),
            request.headers.get("accept"),
        )
        return Response(text, status_code=status, media_type=content_type)


def build(args: dict) -> serve.Application:
    """The application config.yaml names: `replicas` copies of the classifier (default 1)."""
    replicas = int(args.get("replicas", 1))
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    return Classifier.options(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": threads_per_replica(replicas)},
    ).bind(replicas)
