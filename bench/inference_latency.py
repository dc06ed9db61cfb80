"""Endpoint latency and throughput per serving mode, through the real handlers.

Builds a real artifact (random weights, seeded) with model.save_artifact in a temporary folder,
or reads a trained one (--model-dir: an artifact folder or model.tar.gz, whose agreement figures
mean more than a random network's near-ties), loads it with the handlers' own loader once per
serving mode (dogbreed_jobs/serving_speed.py) and times what the serving container runs for each
request: input_fn on a 500x375 photo-like JPEG, predict_fn and output_fn. Per mode it reports

- load_s: model_fn's load time (reading the weights, preparing the mode, capturing graphs);
- first_s: the first one-image request after loading (lazy initialisation, compilation);
- p50_ms / p95_ms: one-image request latency after warm-up, handlers end to end;
- pre_ms: the preprocessing share of that: input_fn (decode) plus the transform to a tensor;
- img_s: images per second for one JSON request holding --batch images;
- top1 / max_dp: top-1 agreement with eager fp32, and the largest absolute difference of any
  class probability, on --agreement-images varied generated images.

Modes are timed interleaved (one request of each in turn), so a noisy machine slows all of them
alike. Every mode the endpoint would accept on this machine runs: GPU-only modes only where
CUDA is available, `bf16` on a CPU only where it has native bf16 (AVX512-BF16 or AMX).
`--variants all` adds two modes not offered by the endpoint, for comparison: `compile`
(torch.compile, minutes of warm-up for DenseNet-161) and `jit_freeze` (torch.jit.trace + freeze,
deprecated since torch 2.5).
In the same run, `--ray-python` and `--torchserve-python` add the endpoint's serving stacks
end to end over HTTP (bench/http_latency.py).

    .venv/bin/python bench/inference_latency.py [--device auto|cpu|cuda] [--image-size 224]
        [--repeat 20] [--batch 16] [--model densenet161] [--variants eager,channels_last]
        [--model-dir PATH]
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import http_latency  # noqa: E402
import torch

from dogbreed_jobs import contract, inference, serving_speed
from dogbreed_jobs import model as artifact
from dogbreed_jobs.transforms import resize_size_for
from pipeline.sample_data import photo_like  # noqa: E402

EXTRA_VARIANTS = ("compile", "jit_freeze")
COLUMNS = (
    "variant",
    "device",
    "load_s",
    "first_s",
    "p50_ms",
    "p95_ms",
    "pre_ms",
    "img_s",
    "top1",
    "max_dp",
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=20, help="timed one-image requests")
    # 16: the most one request may hold (scripts/inference.py, under SageMaker's 6 MB cap).
    parser.add_argument("--batch", type=int, default=16, help="images in the batch request")
    parser.add_argument("--batch-repeat", type=int, default=3, help="timed batch requests")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--model", default="densenet161")
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="a trained artifact (folder or model.tar.gz) instead of random weights; "
        "--model, --classes and --image-size then come from it",
    )
    parser.add_argument("--classes", type=int, default=133)
    parser.add_argument("--agreement-images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--variants",
        default="",
        help="comma-separated serving modes (default: every mode the device supports); "
        f"'all' adds {', '.join(EXTRA_VARIANTS)}",
    )
    http_latency.add_arguments(parser)
    return parser.parse_args(argv)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is available")
    return torch.device(name)


def endpoint_modes(device: torch.device) -> list[str]:
    """The concrete modes the endpoint accepts on this machine (serving_speed decides)."""
    modes = []
    for mode in serving_speed.MODES:
        try:
            if mode != "auto" and serving_speed.serving_mode(device, mode) == mode:
                modes.append(mode)
        except ValueError:
            continue
    return modes


def pick_variants(text: str, device: torch.device) -> list[str]:
    supported = endpoint_modes(device)
    if not text:
        return supported
    if text == "all":
        return [*supported, *EXTRA_VARIANTS]
    variants = [v.strip() for v in text.split(",") if v.strip()]
    for variant in variants:
        if variant not in (*supported, *EXTRA_VARIANTS):
            raise SystemExit(
                f"--variants: {variant!r} is not one of {', '.join((*supported, *EXTRA_VARIANTS))}"
            )
    return variants


def model_folder(folder: Path, args) -> Path:
    """The artifact to serve: --model-dir (extracted if a tarball) or a random one."""
    if args.model_dir is None:
        return build_artifact(folder, args)
    from dogbreed_jobs.evaluate import resolve_model_dir

    model_dir = resolve_model_dir(args.model_dir, folder)
    settings = json.loads((model_dir / contract.SETTINGS_FILE).read_text())
    args.model, args.classes = settings["model_name"], settings["num_classes"]
    args.image_size = settings["image_size"]
    return model_dir


def build_artifact(folder: Path, args) -> Path:
    torch.manual_seed(133)
    network = artifact.build_model(args.model, args.classes)
    settings = {
        "model_name": args.model,
        "image_size": args.image_size,
        "resize_size": resize_size_for(args.image_size),
        "hidden_units": 512,
        "dropout": 0.3,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "top_k": 5,
    }
    artifact.save_artifact(
        folder, network, [f"breed_{i:03d}" for i in range(args.classes)], settings
    )
    return folder


def load(model_dir: Path, variant: str, device: torch.device):
    """(classifier, load seconds) for a serving mode or one of the comparison-only variants."""
    started = time.perf_counter()
    if variant not in EXTRA_VARIANTS:
        classifier = inference.load_classifier(str(model_dir), mode=variant, device=device)
    else:
        classifier = inference.load_classifier(str(model_dir), mode="eager", device=device)
        network = classifier.network
        if variant == "compile":
            compiled = torch.compile(network)
        else:
            size = classifier.settings["image_size"]
            example = torch.zeros(1, 3, size, size, device=device)
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                compiled = torch.jit.freeze(torch.jit.trace(network, example).eval())

        def runner(batch, compiled=compiled):
            return compiled(batch.to(device)).float()

        classifier = dataclasses.replace(classifier, mode=variant, runner=runner)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return classifier, time.perf_counter() - started


def serve(classifier, body: bytes, content_type: str) -> tuple[float, float]:
    """(total seconds, input_fn seconds) of one request through the three handlers."""
    started = time.perf_counter()
    request = inference.input_fn(body, content_type)
    decoded = time.perf_counter()
    text, _ = inference.output_fn(inference.predict_fn(request, classifier), "application/json")
    assert text.startswith('{"predictions"')
    return time.perf_counter() - started, decoded - started


def agreement_batch(count: int, image_size: int, settings: dict) -> torch.Tensor:
    """Preprocessed tensors of varied photo-like images: sizes, aspect ratios, some grey."""
    from dogbreed_jobs.transforms import serve_transform

    transform = serve_transform(settings)
    rng = np.random.default_rng(2024)
    tensors = []
    for i in range(count):
        width, height = (int(v) for v in rng.integers(image_size, 3 * image_size, size=2))
        image = photo_like(rng, width, height)
        if i % 7 == 0:
            image = image.convert("L").convert("RGB")
        tensors.append(transform(image))
    return torch.stack(tensors)


def probabilities(classifier, tensors: torch.Tensor, batch: int) -> np.ndarray:
    """Images x classes probabilities through predict_fn (top_k = every class)."""
    classes = len(classifier.class_names)
    table = np.zeros((len(tensors), classes))
    for start in range(0, len(tensors), batch):
        chunk = tensors[start : start + batch]
        answer = inference.predict_fn(inference.Request(tensor=chunk, top_k=classes), classifier)
        for row, entries in enumerate(answer["predictions"]):
            for entry in entries:
                table[start + row, entry["index"]] = entry["probability"]
    return table


def one_image() -> bytes:
    """The one-image request every mode and stack is timed on."""
    return common.jpeg_bytes(500, 375, seed=0)


def in_process(
    args, device: torch.device, variants: list[str], model_dir: Path
) -> tuple[list[dict], dict]:
    """One record per serving mode, timed interleaved through the handlers in this process,
    and the loaded classifiers by mode."""
    one = one_image()
    many = json.dumps(
        {
            "instances": [
                {"b64": base64.b64encode(common.jpeg_bytes(500, 375, seed=i)).decode("ascii")}
                for i in range(args.batch)
            ]
        }
    ).encode()

    records = []
    loaded = {}
    for variant in variants:
        loaded[variant] = load(model_dir, variant, device)
    reference = loaded.get("eager") or load(model_dir, "eager", device)
    tensors = agreement_batch(args.agreement_images, args.image_size, reference[0].settings)
    expected = probabilities(reference[0], tensors, args.batch)

    first, latency, decode, transform, batch_s = ({v: [] for v in variants} for _ in range(5))
    for variant in variants:
        first[variant] = serve(loaded[variant][0], one, "image/jpeg")[0]
        for _ in range(args.warmup):
            serve(loaded[variant][0], one, "image/jpeg")
        serve(loaded[variant][0], many, "application/json")
    for _ in range(args.repeat):  # interleaved: one request of each mode in turn
        for variant in variants:
            total, decoded = serve(loaded[variant][0], one, "image/jpeg")
            latency[variant].append(total)
            decode[variant].append(decoded)
    request = inference.input_fn(one, "image/jpeg")
    for _ in range(args.repeat):
        for variant in variants:
            started = time.perf_counter()
            inference._batch(request, loaded[variant][0])
            transform[variant].append(time.perf_counter() - started)
    for _ in range(args.batch_repeat):
        for variant in variants:
            batch_s[variant].append(serve(loaded[variant][0], many, "application/json")[0])

    for variant in variants:
        classifier, load_s = loaded[variant]
        got = probabilities(classifier, tensors, args.batch)
        pre_ms = 1e3 * (statistics.median(decode[variant]) + statistics.median(transform[variant]))
        p50 = 1e3 * contract.percentile(latency[variant], 0.50)
        record = {
            "bench": "inference",
            "variant": variant,
            "device": device.type,
            "model": args.model,
            "weights": "trained" if args.model_dir else "random",
            "classes": args.classes,
            "image_size": args.image_size,
            "request_image": "500x375 JPEG",
            "threads": torch.get_num_threads(),
            "load_s": round(load_s, 3),
            "first_s": round(first[variant], 3),
            "p50_ms": round(p50, 2),
            "p95_ms": round(1e3 * contract.percentile(latency[variant], 0.95), 2),
            "min_ms": round(1e3 * min(latency[variant]), 2),
            "pre_ms": round(pre_ms, 2),
            "pre_share": round(pre_ms / p50, 3),
            "batch": args.batch,
            "img_s": round(args.batch / statistics.median(batch_s[variant]), 2),
            "top1": float((got.argmax(1) == expected.argmax(1)).mean()),
            "max_dp": float(np.abs(got - expected).max()),
            "agreement_images": args.agreement_images,
            "repeat": args.repeat,
            **common.machine(device.type),
        }
        records.append(common.emit(record))
    return records, loaded


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    variants = pick_variants(args.variants, device)
    one = one_image()
    with tempfile.TemporaryDirectory(prefix="inference-bench-") as folder:
        model_dir = model_folder(Path(folder), args)
        records, loaded = in_process(args, device, variants, model_dir)
        # The HTTP stacks take turns with the fastest in-process mode (bench/http_latency.py).
        best = min(records, key=lambda record: record["p50_ms"])["variant"]
        over_http = http_latency.run(
            model_dir, one, args, lambda: serve(loaded[best][0], one, "image/jpeg")[0]
        )
    common.print_table(
        records,
        COLUMNS,
        f"inference: {args.model} {args.image_size}px, {args.classes} classes, "
        f"{device.type}, {torch.get_num_threads()} threads",
    )
    http_latency.print_table(over_http)
    return records + over_http


if __name__ == "__main__":
    main()
