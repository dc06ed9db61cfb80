"""Processing job "evaluate": score the trained model once on the held-out test split.

SageMaker runs `python3 /opt/ml/processing/input/code/evaluate.py` with the model artifact
(`model.tar.gz`) under `--model-dir` and the test split (an ImageFolder) under `--test-dir`.
It writes `evaluation.json` in SageMaker's model-quality format, which the pipeline's
condition step reads (`multiclass_classification_metrics.accuracy.value`), plus a `details`
block and `confusion_matrix.png`, and prints one METRICS line.

It also runs the test split in the endpoint's bf16 mode (channels-last + bfloat16 autocast,
dogbreed_jobs/serving_speed.py) and records in the `serving` block how often its top-1 agrees
with eager fp32: `bf16_agreement` (agreed, total, fraction). bf16 is allowed for this model when
the fraction reaches `--bf16-min-agreement` (1.0: every test image), and
`serving.environment.DOGBREED_BF16_ALLOWED` ("true"/"false", a string as environment variables
are) is what the pipeline hands the endpoint (steps/register.py), where `auto` then serves bf16 on
CPUs with native bf16. Agreement is a property of the model, so it is measured on any CPU: where
bf16 is emulated (no AVX512-BF16 or AMX) that pass takes several times the fp32 one.

With `--champion-status serving` it also scores the model the endpoint serves (under
`--champion-dir`, found by CompareWithDeployed) on the same test split with the same code, each
model with its own class names and transforms, and records both and the champion/challenger
verdict (dogbreed_jobs/champion_gate.py) in the `champion` and `champion_gate` blocks, which the
pipeline's CheckChampion condition reads.

The test folders must name exactly the model's classes. Classes are matched by name, not by
folder position, so `001.Akita` in the test split and class index 0 "Akita" in the model agree
even when the folders number or sort differently. Metrics are computed here with numpy; no
scikit-learn in the container.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from dogbreed_jobs import archive, champion_gate, serving_speed, tracking
from dogbreed_jobs import model as artifact
from dogbreed_jobs.contract import (
    CHAMPION_NONE,
    CHAMPION_SERVING,
    CHAMPION_UNREADABLE,
    CONFUSION_MATRIX_FILE,
    EVALUATION_FILE,
    MODEL_ARCHIVE,
    WEIGHTS_FILE,
    class_name_of,
    format_metrics,
)
from dogbreed_jobs.cpus import available_cpus
from dogbreed_jobs.transforms import serve_transform, to_rgb

LOG = logging.getLogger("evaluate")

TOP_K = 5
# Above this many classes the per-cell counts become unreadable, so the plot shows colour only.
ANNOTATE_MAX_CLASSES = 30


class ClassMismatchError(ValueError):
    """The test split's class folders do not name the model's classes."""


class EmptyTestSplitError(ValueError):
    """The test split holds no images."""


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model-dir",
        default="/opt/ml/processing/model",
        help="folder holding model.tar.gz (or an already extracted artifact), or the tarball",
    )
    parser.add_argument("--test-dir", default="/opt/ml/processing/test")
    parser.add_argument("--output-dir", default="/opt/ml/processing/evaluation")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--bf16-min-agreement",
        type=float,
        default=1.0,
        help="the share of test images whose bf16 top-1 must equal fp32's for the endpoint to "
        "serve this model in bf16 (0 to 1; 1: every image)",
    )
    parser.add_argument(
        "--champion-dir",
        default="/opt/ml/processing/champion",
        help="the serving model's model.tar.gz (or a folder without one: nothing to score)",
    )
    parser.add_argument(
        "--champion-status",
        default=CHAMPION_NONE,
        help="CompareWithDeployed's champion.status: serving, same, none or unreadable",
    )
    parser.add_argument("--champion-model-data", default="", help="the serving model's S3 URI")
    parser.add_argument(
        "--champion-note", default="", help="what the endpoint serves, in words (for the reason)"
    )
    parser.add_argument(
        "--champion-metric",
        default="accuracy",
        help=f"the metric the gate compares: {', '.join(champion_gate.metric_choices())}",
    )
    parser.add_argument(
        "--champion-tolerance",
        type=float,
        default=0.0,
        help="how much worse than the serving model the new one may be on that metric (0 to 1)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(8, available_cpus()),
        help="DataLoader worker processes decoding JPEGs (0: decode in the main process)",
    )
    return parser


def resolve_model_dir(model_dir: str | os.PathLike, scratch: str | os.PathLike) -> Path:
    """The folder holding `model.pth`: extracting `model.tar.gz` into `scratch` when given one."""
    model_dir = Path(model_dir)
    if model_dir.is_file():
        tarball = model_dir
    elif (model_dir / MODEL_ARCHIVE).is_file():
        tarball = model_dir / MODEL_ARCHIVE
    elif (model_dir / WEIGHTS_FILE).is_file():
        return model_dir
    else:
        raise FileNotFoundError(
            f"{model_dir} holds neither {MODEL_ARCHIVE} nor an extracted artifact ({WEIGHTS_FILE})"
        )
    archive.extract(tarball, scratch)
    return Path(scratch)


def load_image(path: str) -> Image.Image:
    # The endpoint applies EXIF orientation too (transforms.to_rgb); ImageFolder's default
    # loader does not, and evaluation must see what serving sees.
    with Image.open(path) as image:
        return to_rgb(image)


def _test_dataset(test_dir: Path, class_names: list[str], settings: dict) -> ImageFolder:
    folders = sorted(entry.name for entry in os.scandir(test_dir) if entry.is_dir())
    names = [class_name_of(folder) for folder in folders]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ClassMismatchError(
            f"test split {test_dir} has several folders for the classes {duplicates}"
        )
    missing = sorted(set(class_names) - set(names))
    unexpected = sorted(set(names) - set(class_names))
    if missing or unexpected:
        raise ClassMismatchError(
            f"test split {test_dir} does not match the model's {len(class_names)} classes: "
            f"missing from the test split {missing}, not known to the model {unexpected}"
        )
    index_of = {name: index for index, name in enumerate(class_names)}
    # ImageFolder numbers folders in sorted order; map each to the model's index by name.
    model_index = [index_of[name] for name in names]
    dataset = ImageFolder(
        str(test_dir),
        transform=serve_transform(settings),
        target_transform=model_index.__getitem__,
        loader=load_image,
        allow_empty=True,
    )
    if len(dataset) == 0:
        raise EmptyTestSplitError(f"test split {test_dir} holds no images")
    if dataset.classes != folders:
        raise ClassMismatchError(f"ImageFolder read classes {dataset.classes}, expected {folders}")
    return dataset


@dataclass
class Predictions:
    targets: np.ndarray  # (N,) model class index of each image's folder
    predicted: np.ndarray  # (N,) top-1 model class index
    topk_hits: int  # images whose class is among the top `k` predictions
    k: int
    # (N,) top-1 of the same images in the `compare` mode given to predict(), if any
    compared: np.ndarray | None = None


def predict(
    network: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    k: int,
    compare=None,
) -> Predictions:
    """Eager fp32 predictions (the metrics), plus the top-1 of `compare` (a serving_speed
    runner) on the same decoded batches, so the images are read once."""
    targets, predicted, compared = [], [], []
    hits = 0
    with torch.inference_mode():
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            top = network(images).topk(k, dim=1).indices.cpu()
            hits += int((top == labels[:, None]).any(dim=1).sum())
            targets.append(labels)
            predicted.append(top[:, 0])
            if compare is not None:
                compared.append(compare(images).argmax(dim=1).cpu())
    return Predictions(
        targets=torch.cat(targets).numpy().astype(np.int64),
        predicted=torch.cat(predicted).numpy().astype(np.int64),
        topk_hits=hits,
        k=k,
        compared=torch.cat(compared).numpy().astype(np.int64) if compare is not None else None,
    )


def bf16_runner(network: torch.nn.Module, device: torch.device, image_size: int):
    """The endpoint's bf16 mode on a copy (it converts weights to channels-last in place)."""
    return serving_speed.prepare(copy.deepcopy(network), device, "bf16", image_size)


def has_native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return serving_speed.cpu_has_native_bf16()


def serving_report(
    reference: np.ndarray, bf16: np.ndarray, min_agreement: float, device: torch.device
) -> dict:
    """evaluation.json's `serving` block: bf16's top-1 agreement with fp32 and its verdict."""
    total = len(reference)
    agreed = int((reference == bf16).sum())
    # Counts, not float fractions, decide: 0.995 of 200 images is 199 whatever the rounding.
    allowed = total > 0 and agreed >= math.ceil(min_agreement * total - 1e-9)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    return {
        "bf16_agreement": {
            "agreed": agreed,
            "total": total,
            "fraction": agreed / total if total else 0.0,
        },
        "bf16_min_agreement": min_agreement,
        "bf16_allowed": allowed,
        # What `auto` serves this model in, per kind of device.
        "auto_mode": {
            "cpu_with_native_bf16": serving_speed.auto_mode(cpu, True, allowed),
            "cpu_without_native_bf16": serving_speed.auto_mode(cpu, False, allowed),
            "cuda": serving_speed.auto_mode(cuda, False, allowed),
        },
        "measured_on": {"device": device.type, "native_bf16": has_native_bf16(device)},
        # Read by the pipeline (JsonGet) into the endpoint's environment: strings only.
        "environment": {serving_speed.BF16_ALLOWED_ENV: "true" if allowed else "false"},
    }


def confusion_matrix(targets: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    flat = targets * num_classes + predicted
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # An undefined ratio (no support, no predictions) counts as 0, as scikit-learn's default.
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def classification_metrics(counts: np.ndarray) -> dict:
    """Accuracy and per-class, macro and weighted precision / recall / F1 of a confusion matrix.

    Macro averages run over the classes that occur as a true or a predicted label (what
    scikit-learn does without `labels=`), so a class absent from both does not drag them to 0.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    true_positives = np.diag(counts).astype(np.float64)
    support = counts.sum(axis=1)
    predicted = counts.sum(axis=0)
    precision = _ratio(true_positives, predicted)
    recall = _ratio(true_positives, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = (support > 0) | (predicted > 0)
    weights = support / total if total else np.zeros_like(precision)

    def macro(values: np.ndarray) -> float:
        return float(values[present].mean()) if present.any() else 0.0

    return {
        "accuracy": float(true_positives.sum() / total) if total else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "macro_precision": macro(precision),
        "macro_recall": macro(recall),
        "macro_f1": macro(f1),
        "weighted_precision": float((precision * weights).sum()),
        "weighted_recall": float((recall * weights).sum()),
        "weighted_f1": float((f1 * weights).sum()),
    }


def evaluation_report(counts: np.ndarray, class_names: list[str], topk_hits: int, k: int) -> dict:
    """evaluation.json: SageMaker's multiclass model-quality block plus our details."""
    scores = classification_metrics(counts)
    total = int(counts.sum())

    def value(x: float) -> dict:
        return {"value": x, "standard_deviation": "NaN"}

    return {
        "multiclass_classification_metrics": {
            "accuracy": value(scores["accuracy"]),
            "weighted_precision": value(scores["weighted_precision"]),
            "weighted_recall": value(scores["weighted_recall"]),
            "weighted_f1": value(scores["weighted_f1"]),
            "confusion_matrix": {
                true_name: {
                    predicted_name: int(counts[i, j])
                    for j, predicted_name in enumerate(class_names)
                }
                for i, true_name in enumerate(class_names)
            },
        },
        "details": {
            "num_images": total,
            "num_classes": len(class_names),
            "class_names": list(class_names),
            # With fewer than 5 classes "top-5" is top-(number of classes); `top_k` says which.
            "top_k": k,
            "top5_accuracy": topk_hits / total if total else 0.0,
            "macro_precision": scores["macro_precision"],
            "macro_recall": scores["macro_recall"],
            "macro_f1": scores["macro_f1"],
            "per_class": {
                name: {
                    "precision": float(scores["precision"][i]),
                    "recall": float(scores["recall"][i]),
                    "f1": float(scores["f1"][i]),
                    "support": int(scores["support"][i]),
                }
                for i, name in enumerate(class_names)
            },
        },
    }


def confusion_matrix_figure(counts: np.ndarray, class_names: list[str], title: str):
    """A row-normalised confusion matrix; counts printed in the cells only for few classes."""
    # The object-oriented API needs no pyplot global state and no display backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    num_classes = len(class_names)
    support = counts.sum(axis=1, keepdims=True)
    # Colour by the fraction of each true class, so large classes do not wash out small ones.
    fractions = _ratio(counts.astype(np.float64), np.broadcast_to(support, counts.shape))
    side = min(max(6.0, 0.15 * num_classes + 3.0), 30.0)
    figure = Figure(figsize=(side + 1.5, side), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    heatmap = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(heatmap, ax=axes, shrink=0.8, label="fraction of the true class")

    # About 60% of a row's height in points, within what stays legible.
    font_size = max(3.0, min(10.0, 0.6 * side * 72 / max(num_classes, 1)))
    step = max(1, math.ceil(font_size * num_classes / (side * 72 * 0.9)))
    ticks = list(range(0, num_classes, step))
    labels = [class_names[i] for i in ticks]
    axes.set_xticks(ticks, labels, rotation=90, fontsize=font_size)
    axes.set_yticks(ticks, labels, fontsize=font_size)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    if num_classes <= ANNOTATE_MAX_CLASSES:
        for i in range(num_classes):
            for j in range(num_classes):
                axes.text(
                    j,
                    i,
                    str(int(counts[i, j])),
                    ha="center",
                    va="center",
                    fontsize=font_size,
                    color="white" if fractions[i, j] > 0.5 else "black",
                )
    return figure


def _loader(dataset: ImageFolder, args, device: torch.device) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=False,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


def score_champion(args, device: torch.device) -> dict:
    """evaluation.json's `champion` block: the serving model's metrics on the same test split.

    Scored like the new model (its own class names and transforms, eager fp32); a model that
    cannot be loaded or scored here is `unreadable`, with the reason, never a guess.
    """
    block = {
        "status": args.champion_status,
        "model_data": args.champion_model_data or None,
        "note": args.champion_note or args.champion_status,
        "metrics": None,
    }
    if args.champion_status != CHAMPION_SERVING:
        return block
    try:
        with tempfile.TemporaryDirectory(prefix="champion-") as scratch:
            model_dir = resolve_model_dir(args.champion_dir, scratch)
            network, class_names, settings = artifact.load_artifact(model_dir, device)
        dataset = _test_dataset(Path(args.test_dir), class_names, settings)
        k = min(TOP_K, len(class_names))
        result = predict(network, _loader(dataset, args, device), device, k)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        # ClassMismatchError (another class set), a broken or unsafe archive, weights that do
        # not fit the architecture: the serving model cannot be compared with on this split.
        LOG.warning("the serving model cannot be scored: %s", error)
        note = f"{block['note']}, which cannot be scored on this test split ({error})"
        return {**block, "status": CHAMPION_UNREADABLE, "note": note}
    counts = confusion_matrix(result.targets, result.predicted, len(class_names))
    scored = evaluation_report(counts, class_names, result.topk_hits, k)
    return {**block, "metrics": champion_gate.metrics_of(scored), "num_images": len(dataset)}


def write_json(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers < 0:
        raise ValueError(f"--workers must be 0 or more, got {args.workers}")
    if not 0.0 <= args.bf16_min_agreement <= 1.0:
        raise ValueError(
            f"--bf16-min-agreement must be between 0 and 1, got {args.bf16_min_agreement}"
        )
    champion_gate.check_arguments(
        args.champion_metric, args.champion_tolerance, args.champion_status
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    output_dir = Path(args.output_dir)

    with tempfile.TemporaryDirectory(prefix="model-") as scratch:
        model_dir = resolve_model_dir(args.model_dir, scratch)
        network, class_names, settings = artifact.load_artifact(model_dir, device)
    dataset = _test_dataset(Path(args.test_dir), class_names, settings)
    LOG.info(
        "evaluating %s images of %s classes on %s", len(dataset), len(class_names), device.type
    )
    k = min(TOP_K, len(class_names))
    bf16 = bf16_runner(network, device, int(settings["image_size"]))
    result = predict(network, _loader(dataset, args, device), device, k, compare=bf16)
    del network, bf16  # the champion's copy of DenseNet-161 comes next
    counts = confusion_matrix(result.targets, result.predicted, len(class_names))
    report = evaluation_report(counts, class_names, result.topk_hits, k)
    report["serving"] = serving_report(
        result.predicted, result.compared, args.bf16_min_agreement, device
    )
    LOG.info(
        "bf16 top-1 agreement with fp32: %d of %d; bf16 allowed: %s",
        report["serving"]["bf16_agreement"]["agreed"],
        report["serving"]["bf16_agreement"]["total"],
        report["serving"]["bf16_allowed"],
    )
    report["champion"] = score_champion(args, device)
    report["champion_gate"] = champion_gate.verdict(
        args.champion_metric,
        args.champion_tolerance,
        champion_gate.metrics_of(report),
        report["champion"]["status"],
        report["champion"]["metrics"],
        report["champion"]["note"],
    )
    LOG.info("champion/challenger: %s", report["champion_gate"]["reason"])
    # MLflow (tracking.py): this job's run, when a tracking URI is set.
    run = tracking.start(
        tracking.EVALUATION,
        {"test_images": len(dataset), "num_classes": len(class_names), "top_k": k},
    )
    report.update(tracking.evaluation_block(run))

    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / EVALUATION_FILE, report)
    summary = report["multiclass_classification_metrics"]
    details = report["details"]
    title = f"test accuracy {summary['accuracy']['value']:.4f} on {details['num_images']} images"
    figure = confusion_matrix_figure(counts, class_names, title)
    figure.savefig(output_dir / CONFUSION_MATRIX_FILE, dpi=100)
    print(
        format_metrics(
            test_accuracy=summary["accuracy"]["value"],
            test_top5_accuracy=details["top5_accuracy"],
            test_macro_f1=details["macro_f1"],
            test_weighted_f1=summary["weighted_f1"]["value"],
            test_images=details["num_images"],
            test_bf16_agreement=report["serving"]["bf16_agreement"]["fraction"],
        ),
        flush=True,
    )
    run.log_evaluation(report, output_dir)
    run.end()
    return report
