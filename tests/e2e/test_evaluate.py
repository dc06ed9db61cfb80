"""The evaluation processing job, run for real on a small trained DenseNet-161 (CPU).

Expected metrics are recomputed here by hand from the endpoint handlers' predictions on the
same images, so the evaluation and the endpoint are checked against each other.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.paths import SCRIPTS
from PIL import Image

from dogbreed_jobs import contract, evaluate, inference, serving_speed
from dogbreed_jobs.archive import UnsafeArchiveError
from pipeline.bundle import Bundle

MULTICLASS_KEYS = {
    "accuracy",
    "weighted_precision",
    "weighted_recall",
    "weighted_f1",
    "confusion_matrix",
}


def run_evaluate(model_dir, test_dir, output_dir, *extra: str) -> tuple[dict, str]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        evaluate.main(
            [
                "--model-dir", str(model_dir),
                "--test-dir", str(test_dir),
                "--output-dir", str(output_dir),
                "--batch-size", "8",
                *extra,
            ]
        )  # fmt: skip
    return json.loads((Path(output_dir) / "evaluation.json").read_text()), stdout.getvalue()


@pytest.fixture(scope="module")
def evaluated(model_artifact, model_tarball, tmp_path_factory):
    """One run on model.tar.gz (as SageMaker mounts it), with DataLoader worker processes."""
    output_dir = tmp_path_factory.mktemp("evaluation")
    report, stdout = run_evaluate(
        model_tarball.parent, model_artifact.data_root / "test", output_dir, "--workers", "2"
    )
    return output_dir, report, stdout


@pytest.fixture(scope="module")
def endpoint_predictions(model_artifact):
    """(true name, top-5 names) per test image, from the endpoint handlers in requests of as
    many images as the endpoint takes."""
    classifier = inference.model_fn(str(model_artifact.model_dir))
    truths, images = [], []
    for folder in sorted((model_artifact.data_root / "test").iterdir()):
        for path in sorted(folder.glob("*.jpg")):
            truths.append(folder.name.split(".", 1)[1])
            images.append({"b64": base64.b64encode(path.read_bytes()).decode()})
    rows = []
    for start in range(0, len(images), inference.DEFAULT_MAX_BATCH):
        chunk = images[start : start + inference.DEFAULT_MAX_BATCH]
        body = json.dumps({"instances": chunk, "top_k": 5})
        answer = inference.predict_fn(inference.input_fn(body, "application/json"), classifier)
        rows.extend(answer["predictions"])
    return [
        (truth, [entry["label"] for entry in row]) for truth, row in zip(truths, rows, strict=True)
    ]


def hand_metrics(pairs: list[tuple[str, str]], names: list[str]) -> dict:
    """Plain-Python precision / recall / F1 from (true, predicted) pairs."""
    counts = {t: {p: 0 for p in names} for t in names}
    for true, predicted in pairs:
        counts[true][predicted] += 1
    total = len(pairs)
    per_class = {}
    for name in names:
        tp = counts[name][name]
        support = sum(counts[name].values())
        predicted = sum(counts[t][name] for t in names)
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return {
        "confusion_matrix": counts,
        "accuracy": sum(counts[n][n] for n in names) / total,
        "per_class": per_class,
        **{
            f"weighted_{m}": sum(c[m] * c["support"] for c in per_class.values()) / total
            for m in ("precision", "recall", "f1")
        },
        **{
            f"macro_{m}": sum(c[m] for c in per_class.values()) / len(names)
            for m in ("precision", "recall", "f1")
        },
    }


def test_evaluation_json_has_the_sagemaker_model_quality_shape(evaluated, model_artifact):
    _, report, _ = evaluated
    assert set(report) == {
        "multiclass_classification_metrics",
        "details",
        "serving",
        "champion",
        "champion_gate",
    }
    metrics = report["multiclass_classification_metrics"]
    assert set(metrics) == MULTICLASS_KEYS
    for key in MULTICLASS_KEYS - {"confusion_matrix"}:
        assert set(metrics[key]) == {"value", "standard_deviation"}
        assert metrics[key]["standard_deviation"] == "NaN"
        assert 0.0 <= metrics[key]["value"] <= 1.0
    names = model_artifact.class_names
    assert set(metrics["confusion_matrix"]) == set(names)
    assert all(set(row) == set(names) for row in metrics["confusion_matrix"].values())
    details = report["details"]
    assert set(details) >= {
        "top5_accuracy", "macro_precision", "macro_recall", "macro_f1", "per_class", "num_images",
    }  # fmt: skip
    assert details["num_images"] == 24
    assert details["class_names"] == names
    assert details["top_k"] == 5


def test_metrics_match_a_hand_computation_from_the_endpoint_predictions(
    evaluated, endpoint_predictions, model_artifact
):
    _, report, _ = evaluated
    names = model_artifact.class_names
    expected = hand_metrics([(t, top[0]) for t, top in endpoint_predictions], names)
    matrix = np.array([[expected["confusion_matrix"][t][p] for p in names] for t in names])
    # Off-diagonal, asymmetric counts make precision differ from recall, so a swap shows.
    assert not np.array_equal(matrix, matrix.T), "the fixture model should make some mistakes"

    metrics = report["multiclass_classification_metrics"]
    assert metrics["confusion_matrix"] == expected["confusion_matrix"]
    for key in ("accuracy", "weighted_precision", "weighted_recall", "weighted_f1"):
        assert metrics[key]["value"] == pytest.approx(expected[key]), key
    details = report["details"]
    for key in ("macro_precision", "macro_recall", "macro_f1"):
        assert details[key] == pytest.approx(expected[key]), key
    for name in names:
        assert details["per_class"][name] == pytest.approx(expected["per_class"][name]), name
    top5 = sum(t in top for t, top in endpoint_predictions) / len(endpoint_predictions)
    assert details["top5_accuracy"] == pytest.approx(top5)


def test_metric_line_reports_the_test_accuracy(evaluated):
    _, report, stdout = evaluated
    line = next(line for line in stdout.splitlines() if line.startswith("METRICS "))
    accuracy = float(re.search(r"\btest_accuracy=([0-9.]+)", line).group(1))
    top5 = float(re.search(r"\btest_top5_accuracy=([0-9.]+)", line).group(1))
    assert accuracy == pytest.approx(
        report["multiclass_classification_metrics"]["accuracy"]["value"], abs=1e-6
    )
    assert top5 == pytest.approx(report["details"]["top5_accuracy"], abs=1e-6)
    assert re.search(r"\btest_images=24\b", line)


def test_bf16_agreement_is_what_the_handlers_answer_in_fp32_and_in_bf16(evaluated, model_artifact):
    """The `serving` block counts the test images whose top-1 the endpoint's bf16 mode keeps."""
    _, report, stdout = evaluated
    model_dir = str(model_artifact.model_dir)
    eager = inference.load_classifier(model_dir, mode="eager", device="cpu")
    # The endpoint's bf16 runner, built as evaluation builds it: on any CPU, native or not.
    fresh = inference.load_classifier(model_dir, mode="eager", device="cpu")
    size = fresh.settings["image_size"]
    runner = serving_speed.prepare(fresh.network, fresh.device, "bf16", size)
    bf16 = dataclasses.replace(fresh, mode="bf16", runner=runner)
    bodies = []
    for folder in sorted((model_artifact.data_root / "test").iterdir()):
        bodies.extend(path.read_bytes() for path in sorted(folder.glob("*.jpg")))
    top1 = {}
    for name, classifier in (("fp32", eager), ("bf16", bf16)):
        top1[name] = []
        for start in range(0, len(bodies), 8):  # evaluation's batches (--batch-size 8)
            chunk = [base64.b64encode(b).decode() for b in bodies[start : start + 8]]
            request = inference.input_fn(json.dumps({"instances": chunk}), "application/json")
            answer = inference.predict_fn(request, classifier)
            top1[name].extend(row[0]["index"] for row in answer["predictions"])
    agreed = sum(a == b for a, b in zip(top1["fp32"], top1["bf16"], strict=True))

    serving = report["serving"]
    assert serving["bf16_agreement"] == {"agreed": agreed, "total": 24, "fraction": agreed / 24}
    assert serving["bf16_min_agreement"] == 1.0
    assert serving["bf16_allowed"] is (agreed == 24)
    verdict = "true" if agreed == 24 else "false"
    assert serving["environment"] == {"DOGBREED_BF16_ALLOWED": verdict}
    # What the pipeline's JsonGet reads into the endpoint's environment (steps/evaluation.py).
    node = report
    for key in contract.BF16_ALLOWED_PATH.split("."):
        node = node[key]
    assert node == verdict
    assert serving["measured_on"] == {
        "device": "cpu", "native_bf16": serving_speed.cpu_has_native_bf16(),
    }  # fmt: skip
    line = next(line for line in stdout.splitlines() if line.startswith("METRICS "))
    shown = float(re.search(r"\btest_bf16_agreement=([0-9.]+)", line).group(1))
    assert shown == pytest.approx(agreed / 24, abs=1e-6)


@pytest.mark.parametrize(
    ("agreed", "total", "threshold", "allowed"),
    [
        (10, 10, 1.0, True),
        (9, 10, 1.0, False),
        (9, 10, 0.9, True),
        (8, 10, 0.9, False),
        (199, 200, 0.995, True),  # 0.995 * 200 is 199.00000000000003 in floats
        (0, 0, 0.0, False),  # nothing measured allows nothing
    ],
)
def test_bf16_is_allowed_when_agreement_reaches_the_threshold(agreed, total, threshold, allowed):
    reference = np.arange(total) % 7
    bf16 = reference.copy()
    bf16[agreed:] += 1
    serving = evaluate.serving_report(reference, bf16, threshold, torch.device("cpu"))
    assert serving["bf16_agreement"]["agreed"] == agreed
    assert serving["bf16_allowed"] is allowed
    assert serving["environment"] == {"DOGBREED_BF16_ALLOWED": "true" if allowed else "false"}
    assert serving["auto_mode"] == {
        "cpu_with_native_bf16": "bf16" if allowed else "channels_last",
        "cpu_without_native_bf16": "channels_last",
        "cuda": "eager",
    }


def test_the_bf16_threshold_is_an_argument_and_a_bad_one_is_refused(model_artifact, tmp_path):
    report, _ = run_evaluate(
        model_artifact.model_dir,
        model_artifact.data_root / "test",
        tmp_path,
        "--bf16-min-agreement",
        "0",
    )
    assert report["serving"]["bf16_min_agreement"] == 0.0
    assert report["serving"]["environment"] == {"DOGBREED_BF16_ALLOWED": "true"}
    for bad in ("1.5", "-0.1"):
        refusal = rf"--bf16-min-agreement must be between 0 and 1, got {bad}"
        with pytest.raises(ValueError, match=refusal):
            run_evaluate(
                model_artifact.model_dir, model_artifact.data_root / "test", tmp_path / "bad",
                "--bf16-min-agreement", bad,
            )  # fmt: skip


def test_confusion_matrix_png_is_written_and_valid(evaluated):
    output_dir, _, _ = evaluated
    with Image.open(output_dir / "confusion_matrix.png") as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(output_dir / "confusion_matrix.png") as image:
        assert min(image.size) >= 400


def test_extracted_model_dir_gives_a_byte_identical_evaluation(evaluated, model_artifact, tmp_path):
    output_dir, _, _ = evaluated
    run_evaluate(model_artifact.model_dir, model_artifact.data_root / "test", tmp_path)
    # Also deterministic: no worker processes here, two in the reference run.
    assert (tmp_path / "evaluation.json").read_bytes() == (
        output_dir / "evaluation.json"
    ).read_bytes()


def test_test_classes_are_matched_by_name_not_by_folder_order(evaluated, model_artifact, tmp_path):
    _, reference, _ = evaluated
    test_dir = tmp_path / "test"
    folders = sorted((model_artifact.data_root / "test").iterdir())
    for position, folder in enumerate(folders):
        name = folder.name.split(".", 1)[1]
        # Reverse the numbering, and leave one folder without a number at all.
        renamed = name if position == 2 else f"{len(folders) - position:03d}.{name}"
        shutil.copytree(folder, test_dir / renamed)
    (test_dir / "class_names.json").write_text("[]")  # files beside the folders are ignored
    report, _ = run_evaluate(model_artifact.model_dir, test_dir, tmp_path / "out")
    assert report == reference


@pytest.mark.parametrize("member", ["dot-dot", "symlink", "hardlink"])
def test_model_tarball_with_a_member_escaping_the_folder_is_refused(
    model_artifact, tmp_path, monkeypatch, member
):
    # evaluate extracts into a temporary folder: put it where an escape would be visible.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    outside = scratch / "outside.txt"
    tarball = tmp_path / "model" / "model.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(model_artifact.model_dir / "class_names.json", arcname="class_names.json")
        if member == "dot-dot":
            info = tarfile.TarInfo("../outside.txt")
            info.size = len(b"escaped")
            tar.addfile(info, io.BytesIO(b"escaped"))
        else:
            info = tarfile.TarInfo("model.pth")
            info.type = tarfile.SYMTYPE if member == "symlink" else tarfile.LNKTYPE
            info.linkname = "../outside.txt"
            tar.addfile(info)
    with pytest.raises(UnsafeArchiveError, match=re.escape(repr(info.name))):
        run_evaluate(tarball.parent, model_artifact.data_root / "test", tmp_path / "out")
    assert not outside.exists()
    assert not (tmp_path / "out" / "evaluation.json").exists()


def test_test_split_with_other_classes_is_refused_naming_the_difference(model_artifact, tmp_path):
    test_dir = tmp_path / "test"
    folders = sorted((model_artifact.data_root / "test").iterdir())
    for folder in folders[1:]:
        shutil.copytree(folder, test_dir / folder.name)
    shutil.copytree(folders[1], test_dir / "099.Basenji")
    with pytest.raises(evaluate.ClassMismatchError) as raised:
        run_evaluate(model_artifact.model_dir, test_dir, tmp_path / "out")
    message = str(raised.value)
    assert "missing from the test split ['Affenpinscher']" in message
    assert "not known to the model ['Basenji']" in message
    assert not (tmp_path / "out" / "evaluation.json").exists()


def test_two_test_folders_for_one_class_are_refused(model_artifact, tmp_path):
    test_dir = tmp_path / "test"
    for folder in sorted((model_artifact.data_root / "test").iterdir()):
        shutil.copytree(folder, test_dir / folder.name)
    shutil.copytree(test_dir / "004.Akita", test_dir / "Akita")
    with pytest.raises(evaluate.ClassMismatchError, match=r"several folders .*\['Akita'\]"):
        run_evaluate(model_artifact.model_dir, test_dir, tmp_path / "out")


def test_test_split_without_images_is_refused(model_artifact, tmp_path):
    test_dir = tmp_path / "test"
    for folder in sorted((model_artifact.data_root / "test").iterdir()):
        (test_dir / folder.name).mkdir(parents=True)
    with pytest.raises(evaluate.EmptyTestSplitError, match="holds no images"):
        run_evaluate(model_artifact.model_dir, test_dir, tmp_path / "out")


def test_model_dir_without_an_artifact_is_a_clear_error(model_artifact, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither model.tar.gz nor an extracted artifact"):
        run_evaluate(tmp_path, model_artifact.data_root / "test", tmp_path / "out")


def test_classification_metrics_follow_the_textbook_definitions():
    # Classes: 0 and 1 seen and predicted; 2 predicted but never seen; 3 neither.
    counts = np.array(
        [
            [3, 1, 0, 0],
            [2, 2, 1, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
        ]
    )
    scores = evaluate.classification_metrics(counts)
    assert scores["accuracy"] == pytest.approx(5 / 9)
    np.testing.assert_allclose(scores["precision"], [3 / 5, 2 / 3, 0, 0])
    np.testing.assert_allclose(scores["recall"], [3 / 4, 2 / 5, 0, 0])
    f1 = [2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4), 2 * (2 / 3) * (2 / 5) / (2 / 3 + 2 / 5), 0, 0]
    np.testing.assert_allclose(scores["f1"], f1)
    np.testing.assert_array_equal(scores["support"], [4, 5, 0, 0])
    # Macro averages over the three classes that occur; class 3 is absent from both sides.
    assert scores["macro_precision"] == pytest.approx((3 / 5 + 2 / 3) / 3)
    assert scores["macro_recall"] == pytest.approx((3 / 4 + 2 / 5) / 3)
    assert scores["weighted_recall"] == pytest.approx(scores["accuracy"])
    assert scores["weighted_precision"] == pytest.approx((4 * 3 / 5 + 5 * 2 / 3) / 9)
    assert scores["weighted_f1"] == pytest.approx((4 * f1[0] + 5 * f1[1]) / 9)


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    counts = evaluate.confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 0, 2]), 3)
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


def test_plot_annotates_few_classes_and_keeps_133_classes_legible(tmp_path):
    few = evaluate.confusion_matrix_figure(
        np.eye(6, dtype=int) * 4, [f"c{i}" for i in range(6)], "t"
    )
    assert len(few.axes[0].texts) == 36

    names = [f"{i:03d}.Breed_name_{i}" for i in range(133)]
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, (133, 133)) + np.eye(133, dtype=int) * 20
    figure = evaluate.confusion_matrix_figure(counts, names, "133 classes")
    axes = figure.axes[0]
    assert len(axes.texts) == 0  # numbers in 17,689 cells would be an unreadable smear
    labels = [tick.get_text() for tick in axes.get_yticklabels()]
    assert labels == names
    assert min(tick.get_fontsize() for tick in axes.get_xticklabels()) >= 5
    figure.savefig(tmp_path / "big.png", dpi=50)
    with Image.open(tmp_path / "big.png") as image:
        assert image.format == "PNG"


def test_test_images_are_turned_upright_by_their_exif_orientation_as_the_endpoint_does(tmp_path):
    upright = np.zeros((20, 40, 3), np.uint8)
    upright[:, :10] = 255  # a white band on the left marks which way is up
    exif = Image.Exif()
    exif[0x0112] = 8  # stored turned clockwise: viewers turn it back anticlockwise
    Image.fromarray(np.rot90(upright, k=-1).copy()).save(tmp_path / "dog.png", exif=exif)
    np.testing.assert_array_equal(
        np.asarray(evaluate.load_image(str(tmp_path / "dog.png"))), upright
    )


def test_runs_as_a_script_from_a_code_folder_holding_only_the_bundle(tmp_path):
    # SageMaker runs `python3 /opt/ml/processing/input/code/evaluate.py` with the bundle as
    # the code folder: the entry files and dogbreed_jobs, no pipeline/ beside them. The
    # environment is emptied, so the package comes from code/, not from this venv's install.
    code = tmp_path / "code"
    code.mkdir()
    for name, data in Bundle.from_dir().files.items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_bytes(data)
    result = subprocess.run(
        [sys.executable, str(code / "evaluate.py"), "--help"],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--model-dir" in result.stdout and "--test-dir" in result.stdout
    imported = set()
    for node in ast.walk(ast.parse((SCRIPTS / "dogbreed_jobs" / "evaluate.py").read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert not imported & {"pipeline", "steps"}


# ------------------------------------------------------------- the champion (serving) model


@pytest.fixture(scope="module")
def untrained(model_artifact, tmp_path_factory) -> Path:
    """The fixture model's architecture and classes with freshly initialised weights: a model
    the trained one beats."""
    from dogbreed_jobs import model

    settings = {k: v for k, v in model_artifact.settings.items() if k != "num_classes"}
    torch.manual_seed(7)
    net = model.build_model(
        "densenet161", len(model_artifact.class_names), hidden_units=32, dropout=0.0
    )
    folder = tmp_path_factory.mktemp("untrained")
    model.save_artifact(folder, net, model_artifact.class_names, settings)
    return folder


def champion_args(folder, status="serving", *extra: str) -> tuple[str, ...]:
    return (
        "--champion-dir", str(folder),
        "--champion-status", status,
        "--champion-model-data", "s3://bucket/served/model.tar.gz",
        "--champion-note", "endpoint dogbreed-classifier serves s3://bucket/served/model.tar.gz",
        *extra,
    )  # fmt: skip


def test_the_serving_model_is_scored_with_the_same_code_on_the_same_split(
    evaluated, model_artifact, model_tarball, tmp_path
):
    """The trained model as the champion of itself scores exactly what it scores as the new
    model: one scoring path for both."""
    _, alone, _ = evaluated
    report, _ = run_evaluate(
        model_artifact.model_dir,
        model_artifact.data_root / "test",
        tmp_path,
        *champion_args(model_tarball.parent),
    )
    from dogbreed_jobs import champion_gate

    assert report["champion"]["metrics"] == champion_gate.metrics_of(alone)
    assert report["champion"]["status"] == "serving"
    assert report["champion"]["num_images"] == alone["details"]["num_images"]
    gate = report["champion_gate"]
    assert gate["passed"] is True and gate["challenger"] == gate["champion"]
    assert "is not below the serving model's" in gate["reason"]


def test_a_worse_new_model_fails_the_gate_and_a_better_one_passes(
    model_artifact, untrained, tmp_path
):
    test_dir = model_artifact.data_root / "test"
    worse, _ = run_evaluate(
        untrained, test_dir, tmp_path / "worse", *champion_args(model_artifact.model_dir)
    )
    better, _ = run_evaluate(
        model_artifact.model_dir, test_dir, tmp_path / "better", *champion_args(untrained)
    )
    trained = better["multiclass_classification_metrics"]["accuracy"]["value"]
    fresh = worse["multiclass_classification_metrics"]["accuracy"]["value"]
    assert trained > fresh, "the fixture model should beat an untrained one"
    assert worse["champion_gate"]["passed"] is False
    assert (worse["champion_gate"]["challenger"], worse["champion_gate"]["champion"]) == (
        fresh,
        trained,
    )
    assert (
        f"accuracy {fresh:.4f} is below the serving model's {trained:.4f}"
        in (worse["champion_gate"]["reason"])
    )
    assert better["champion_gate"]["passed"] is True
    # A tolerance as wide as the gap lets the worse one through.
    tolerated, _ = run_evaluate(
        untrained,
        test_dir,
        tmp_path / "tolerated",
        *champion_args(model_artifact.model_dir, "serving", "--champion-tolerance", "1"),
    )
    assert tolerated["champion_gate"]["passed"] is True


def test_a_serving_model_of_other_classes_cannot_be_compared_and_stops_the_release(
    model_artifact, tmp_path
):
    from dogbreed_jobs import model

    settings = {k: v for k, v in model_artifact.settings.items() if k != "num_classes"}
    names = [*model_artifact.class_names[:-1], "Basenji"]
    net = model.build_model("densenet161", len(names), hidden_units=32, dropout=0.0)
    other = tmp_path / "other"
    model.save_artifact(other, net, names, settings)
    report, _ = run_evaluate(
        model_artifact.model_dir,
        model_artifact.data_root / "test",
        tmp_path / "out",
        *champion_args(other),
    )
    assert report["champion"]["status"] == "unreadable"
    assert "not known to the model" in report["champion"]["note"]
    assert report["champion_gate"]["passed"] is False
    assert "cannot be compared" in report["champion_gate"]["reason"]
    off, _ = run_evaluate(
        model_artifact.model_dir,
        model_artifact.data_root / "test",
        tmp_path / "off",
        *champion_args(other, "serving", "--champion-metric", "none"),
    )
    assert off["champion_gate"]["passed"] is True


def test_without_a_serving_model_the_gate_passes_as_a_first_deployment(evaluated):
    _, report, _ = evaluated
    assert report["champion"]["status"] == "none" and report["champion"]["metrics"] is None
    assert report["champion_gate"]["passed"] is True
    assert report["champion_gate"]["champion"] is None
