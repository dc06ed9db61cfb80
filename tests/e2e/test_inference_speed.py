"""Serving modes (dogbreed_jobs.serving_speed): same answers as eager fp32, clear
configuration errors, and the latency benchmark's smoke run. No timing is asserted here:
bench/inference_latency.py measures speed.
"""

from __future__ import annotations

import inspect
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.benchrun import run_bench
from PIL import Image

from dogbreed_jobs import inference, model, serving_speed
from dogbreed_jobs.transforms import resize_size_for
from pipeline.sample_data import photo_like

ON_CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_CUDA else "cpu")
NATIVE_BF16 = serving_speed.cpu_has_native_bf16()
# What the endpoint accepts here: bf16 on a CPU only with native bf16.
MODES_HERE = [
    mode
    for mode in serving_speed.MODES
    if mode != "auto"
    and (ON_CUDA or mode not in serving_speed.CUDA_ONLY_MODES)
    and (ON_CUDA or NATIVE_BF16 or mode not in serving_speed.NATIVE_BF16_MODES)
]
# fp32 modes reorder the same arithmetic (logits differ by ~1e-6 relative, which a saturated
# softmax can turn into ~1e-4 of probability); reduced-precision autocast gets a looser bound.
PROBABILITY_TOLERANCE = {"bf16": 2e-2, "fp16": 5e-3}
FP32_TOLERANCE = 1e-3


def jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def random_artifact(tmp_path_factory):
    """A randomly initialised DenseNet-161 with 133 classes: near-uniform, tie-prone outputs."""
    torch.manual_seed(133)
    net = model.build_model("densenet161", 133, hidden_units=64)
    settings = {"model_name": "densenet161", "image_size": 32, "hidden_units": 64}
    settings["resize_size"] = resize_size_for(32)
    folder = tmp_path_factory.mktemp("random-model")
    model.save_artifact(folder, net, [f"breed_{i}" for i in range(133)], settings)
    return folder


@pytest.fixture(scope="module")
def generated_images():
    """24 varied JPEGs: sizes, aspect ratios, grey ones among them."""
    rng = np.random.default_rng(7)
    images = []
    for i in range(24):
        width, height = (int(v) for v in rng.integers(24, 160, size=2))
        array = np.asarray(photo_like(rng, width, height))
        if i % 5 == 0:
            array = np.repeat(array.mean(2, keepdims=True).astype(np.uint8), 3, axis=2)
        images.append(jpeg(array))
    return images


def all_probabilities(classifier, images: list[bytes]) -> np.ndarray:
    """Images x classes through the handlers, as one JSON request per 16 images."""
    import base64

    classes = len(classifier.class_names)
    rows = []
    for start in range(0, len(images), 16):
        body = json.dumps(
            {
                "instances": [base64.b64encode(b).decode() for b in images[start : start + 16]],
                "top_k": classes,
            }
        )
        request = inference.input_fn(body, "application/json")
        answer = json.loads(inference.output_fn(inference.predict_fn(request, classifier), None)[0])
        for entries in answer["predictions"]:
            row = np.zeros(classes)
            for entry in entries:
                row[entry["index"]] = entry["probability"]
            rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize("which", ["trained", "random"])
@pytest.mark.parametrize("mode", MODES_HERE)
def test_every_mode_gives_the_top1_and_probabilities_of_eager_fp32(
    mode, which, model_artifact, random_artifact, generated_images
):
    model_dir = str(model_artifact.model_dir if which == "trained" else random_artifact)
    eager = inference.load_classifier(model_dir, mode="eager")
    fast = inference.load_classifier(model_dir, mode=mode)
    assert fast.mode == mode
    expected = all_probabilities(eager, generated_images)
    got = all_probabilities(fast, generated_images)
    if mode not in PROBABILITY_TOLERANCE:
        # Exact top-1 is the promise of every fp32 mode, random near-uniform outputs included.
        assert np.abs(got - expected).max() <= FP32_TOLERANCE
        np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))
    elif which == "random":
        # Reduced precision may swap near-ties of a random network's near-uniform outputs.
        assert np.abs(got - expected).max() <= PROBABILITY_TOLERANCE[mode]
        assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
    else:
        # No promise of the mode itself: whether it keeps a model's answers is measured by
        # evaluation on the test split (test_evaluate.py), and `auto` uses bf16 only then. This
        # fixture's head is fitted to random features scaled by their tiny spread across
        # images, which bf16's rounding blurs: it disagrees on some images.
        assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.5


def test_one_image_and_batched_requests_agree_in_every_mode(model_artifact, generated_images):
    """CUDA graphs serve one-image requests from a captured graph, batches eagerly."""
    for mode in MODES_HERE:
        classifier = inference.load_classifier(str(model_artifact.model_dir), mode=mode)
        batched = all_probabilities(classifier, generated_images[:6])
        single = np.concatenate([all_probabilities(classifier, [b]) for b in generated_images[:6]])
        tolerance = PROBABILITY_TOLERANCE.get(mode, FP32_TOLERANCE)
        assert np.abs(batched - single).max() <= tolerance, mode


def test_auto_is_the_default_and_resolves_per_device(model_artifact, monkeypatch):
    monkeypatch.delenv(serving_speed.SERVING_MODE_ENV, raising=False)
    monkeypatch.delenv(serving_speed.BF16_ALLOWED_ENV, raising=False)
    classifier = inference.model_fn(str(model_artifact.model_dir))
    assert classifier.mode == serving_speed.AUTO_MODE[DEVICE.type]
    for raw in ("auto", " AUTO ", ""):
        monkeypatch.setenv(serving_speed.SERVING_MODE_ENV, raw)
        assert serving_speed.serving_mode(torch.device("cpu")) == serving_speed.AUTO_MODE["cpu"]
        assert serving_speed.serving_mode(torch.device("cuda")) == serving_speed.AUTO_MODE["cuda"]
    # The default on the CPU keeps top-1 identical (tested above), so it must be an fp32 mode.
    assert serving_speed.AUTO_MODE["cpu"] in ("eager", "channels_last")


def test_the_mode_comes_from_the_environment_variable(model_artifact, monkeypatch):
    monkeypatch.setenv(serving_speed.SERVING_MODE_ENV, "Channels-Last")
    classifier = inference.model_fn(str(model_artifact.model_dir))
    assert classifier.mode == "channels_last"
    conv = next(m for m in classifier.network.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setenv(serving_speed.SERVING_MODE_ENV, "eager")
    classifier = inference.model_fn(str(model_artifact.model_dir))
    assert classifier.mode == "eager"
    conv = next(m for m in classifier.network.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()


@pytest.mark.parametrize("raw", ["turbo", "fp32", "channels last", "1"])
def test_an_unknown_mode_is_refused_naming_the_variable_and_the_choices(raw, monkeypatch, tmp_path):
    monkeypatch.setenv(serving_speed.SERVING_MODE_ENV, raw)
    # Checked before the weights are read: the empty folder is never looked at.
    with pytest.raises(ValueError) as raised:
        inference.model_fn(str(tmp_path))
    message = str(raised.value)
    assert f"DOGBREED_SERVING_MODE={raw!r} is not one of" in message
    assert "auto, eager, channels_last, bf16, fp16, cuda_graph" in message


@pytest.mark.parametrize("native", [True, False], ids=["native-bf16", "no-native-bf16"])
@pytest.mark.parametrize("verdict", ["true", "false", None], ids=["allowed", "refused", "unset"])
def test_auto_serves_bf16_on_a_cpu_only_with_native_bf16_and_the_evaluations_consent(
    native, verdict, monkeypatch
):
    monkeypatch.delenv(serving_speed.SERVING_MODE_ENV, raising=False)
    if verdict is None:
        monkeypatch.delenv(serving_speed.BF16_ALLOWED_ENV, raising=False)
    else:
        monkeypatch.setenv(serving_speed.BF16_ALLOWED_ENV, verdict)
    cpu = torch.device("cpu")
    expected = "bf16" if native and verdict == "true" else "channels_last"
    assert serving_speed.serving_mode(cpu, native_bf16=native) == expected
    assert serving_speed.serving_mode(cpu, "auto", native_bf16=native) == expected
    # A GPU's `auto` is not the CPU's bf16 decision.
    assert serving_speed.serving_mode(torch.device("cuda"), native_bf16=native) == "eager"


def test_the_evaluations_verdict_is_true_only_when_it_says_true(monkeypatch):
    for raw, allowed in (("true", True), (" TRUE ", True), ("false", False), ("1", False)):
        monkeypatch.setenv(serving_speed.BF16_ALLOWED_ENV, raw)
        assert serving_speed.bf16_allowed() is allowed, raw
    monkeypatch.delenv(serving_speed.BF16_ALLOWED_ENV)
    assert serving_speed.bf16_allowed() is False


def test_native_bf16_is_what_the_cpu_flags_say():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to compare with")
    flags = set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    assert serving_speed.cpu_has_native_bf16() == bool({"avx512_bf16", "amx_tile"} & flags)


def test_explicit_bf16_on_a_cpu_without_native_bf16_is_refused_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(serving_speed, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setenv(serving_speed.SERVING_MODE_ENV, "bf16")
    # Checked before the weights are read: the empty folder is never looked at.
    with pytest.raises(ValueError) as raised:
        inference.model_fn(str(tmp_path))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("environment variable DOGBREED_SERVING_MODE='bf16' needs a CUDA GPU")
    assert "native bf16" in message and "use auto or channels_last" in message
    # With native bf16 the same setting is served.
    monkeypatch.setattr(serving_speed, "cpu_has_native_bf16", lambda: True)
    assert serving_speed.serving_mode(torch.device("cpu")) == "bf16"


def test_the_bf16_runner_runs_on_any_cpu_in_channels_last_and_bfloat16():
    """What evaluation measures everywhere: prepare() builds bf16 on a CPU whatever its flags."""
    network = model.build_model("resnet18", 5, hidden_units=8).eval()
    runner = serving_speed.prepare(network, torch.device("cpu"), "bf16", 32)
    assert network.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    network.fc.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    with torch.inference_mode():
        logits = runner(torch.rand(2, 3, 32, 32))
    assert seen == [torch.bfloat16]
    assert logits.dtype == torch.float32 and logits.shape == (2, 5)


@pytest.mark.skipif(ON_CUDA, reason="checks the refusal on a host without CUDA")
@pytest.mark.parametrize("raw", serving_speed.CUDA_ONLY_MODES)
def test_a_gpu_only_mode_is_refused_on_a_cpu_host(raw, monkeypatch, tmp_path):
    monkeypatch.setenv(serving_speed.SERVING_MODE_ENV, raw)
    with pytest.raises(ValueError, match=rf"DOGBREED_SERVING_MODE='{raw}' needs a CUDA GPU"):
        inference.model_fn(str(tmp_path))
    with pytest.raises(ValueError, match="needs a CUDA device"):
        serving_speed.prepare(torch.nn.Identity(), torch.device("cpu"), raw, 32)


def test_model_fn_keeps_the_one_parameter_the_toolkit_expects():
    # The inference toolkit passes its context as a second argument to a model_fn taking two.
    assert len(inspect.signature(inference.model_fn).parameters) == 1
    assert "dogbreed_jobs/serving_speed.py" in model.SERVING_CODE


def test_latency_benchmark_smoke_run_prints_json_lines_and_a_table():
    done, records, lines = run_bench(
        "inference_latency.py",
        *("--model", "resnet18", "--image-size", "64", "--repeat", "3", "--batch", "4"),
        *("--warmup", "1", "--batch-repeat", "1", "--agreement-images", "8", "--threads", "1"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["variant"] for r in records] == MODES_HERE
    for record in records:
        assert record["bench"] == "inference"
        assert record["device"] == DEVICE.type
        assert record["model"] == "resnet18" and record["batch"] == 4
        assert record["top1"] == 1.0
        assert record["max_dp"] <= PROBABILITY_TOLERANCE.get(record["variant"], FP32_TOLERANCE)
        for key in ("load_s", "first_s", "p50_ms", "p95_ms", "pre_ms", "img_s"):
            assert record[key] > 0, key
        assert record["p95_ms"] >= record["p50_ms"]
        assert {"cpu", "cpus", "torch", "date"} <= record.keys()
    header = next(i for i, line in enumerate(lines) if line.startswith("variant "))
    assert lines[header].split() == [
        "variant", "device", "load_s", "first_s", "p50_ms", "p95_ms", "pre_ms", "img_s",
        "top1", "max_dp",
    ]  # fmt: skip
    table = [line.split()[0] for line in lines[header + 2 :] if line.strip()]
    assert table == MODES_HERE
