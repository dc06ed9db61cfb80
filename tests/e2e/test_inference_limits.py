"""The handlers' bounds that no request may push past: JSON nesting and the CPU threads.

A JSON body nesting deeper than `inference.MAX_JSON_DEPTH` (32) is refused with a 400 before it is
parsed, however deep (json.loads would recurse once per level); the depth is found without
parsing, and equals what json.loads sees in any valid document. `model_fn` gives each
model-server worker its share of the CPUs.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dogbreed_jobs import inference

# The documented bound (docs/container-contract.md).
MAX_JSON_DEPTH = 32

FUZZ = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Strings that look like structure: brackets, quotes and backslashes inside JSON strings.
_tricky_text = st.text(alphabet='[]{}"\\,: ab\u00e9\n', max_size=12)
documents = st.recursive(
    st.none() | st.booleans() | st.integers() | _tricky_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(_tricky_text, children, max_size=3)
    ),
    max_leaves=20,
)


def parsed_depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(parsed_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(parsed_depth, value.values()), default=0)
    return 0


def nest(depth: int, kinds: list[str], inner: str) -> str:
    opening, closing = "", ""
    for level in range(depth):
        if kinds[level % len(kinds)] == "list":
            opening, closing = opening + "[", "]" + closing
        else:
            opening, closing = opening + '{"k": ', "}" + closing
    return opening + inner + closing


@FUZZ
@given(document=documents)
@example(document={"b64": '"]]]}'})
@example(document=['\\"[', ["\\"]])
def test_json_depth_is_what_json_loads_sees_in_any_document(document):
    text = json.dumps(document, ensure_ascii=False)
    assert inference.json_depth(text.encode()) == parsed_depth(document)


@FUZZ
@given(
    depth=st.integers(0, 5_000),
    kinds=st.lists(st.sampled_from(["list", "object"]), min_size=1, max_size=4),
    inner=st.sampled_from(['""', '"[[[["', "1", '"\\\\"', '{"url": "[{"}']),
)
@example(depth=100_000, kinds=["list"], inner='""')
@example(depth=MAX_JSON_DEPTH + 1, kinds=["object"], inner='""')
def test_json_deeper_than_the_limit_is_a_400_before_parsing_never_a_recursion_error(
    depth, kinds, inner
):
    body = nest(depth, kinds, inner).encode()
    with pytest.raises(inference.RequestError) as raised:
        inference.input_fn(body, "application/json")
    assert raised.value.status_code == 400
    deep = f"over the limit of {MAX_JSON_DEPTH}" in str(raised.value)
    total = depth + parsed_depth(json.loads(inner))
    assert deep == (total > MAX_JSON_DEPTH), str(raised.value)


def test_json_as_deep_as_the_limit_is_parsed():
    # At the limit the body is parsed, and refused for its shape, not its depth.
    body = nest(MAX_JSON_DEPTH, ["list"], '""').encode()
    with pytest.raises(inference.RequestError, match="must be a base64 string, got list"):
        inference.input_fn(body, "application/json")


@pytest.mark.parametrize(
    "cpus, workers, omp, expected",
    [
        (4, "1", None, 4),  # ml.m5.xlarge with the registered single worker
        (4, "4", None, 1),  # one worker per vCPU, TorchServe's own default
        (8, "3", None, 2),
        (2, "4", None, 1),  # never fewer than one
        (4, None, None, None),  # the worker count unknown: torch's default stays
        (4, " ", None, None),
        (4, "1", "3", None),  # the operator's OMP_NUM_THREADS stays
    ],
)
def test_each_worker_gets_its_share_of_the_cpus(monkeypatch, cpus, workers, omp, expected):
    monkeypatch.setattr(inference, "available_cpus", lambda: cpus)
    for name, value in ((inference.WORKERS_ENV, workers), ("OMP_NUM_THREADS", omp)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert inference.intra_op_threads() == expected


@pytest.mark.parametrize("workers", ["0", "two"])
def test_a_worker_count_that_is_not_a_positive_integer_stops_model_fn(
    monkeypatch, model_artifact, workers
):
    monkeypatch.setenv(inference.WORKERS_ENV, workers)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with pytest.raises(ValueError, match=f"SAGEMAKER_MODEL_SERVER_WORKERS='{workers}'"):
        inference.model_fn(str(model_artifact.model_dir))


def test_model_fn_sets_the_threads_of_its_worker(monkeypatch, model_artifact):
    cpus = len(os.sched_getaffinity(0))
    monkeypatch.setenv(inference.WORKERS_ENV, str(cpus))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        inference.model_fn(str(model_artifact.model_dir))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
