"""Pictures of a local execution: training curves, confusion matrix, pipeline graph.

The executions here are hand-written records, definitions and store objects in the shape the
runner leaves them (docs/local-runner.md), so drawing is tested in a second, without a job;
one run-local of a tiny processing definition checks that the CLI draws them after a run.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from helpers.paths import ROOT
from PIL import Image

from pipeline.cli import main
from pipeline.local import pictures
from pipeline.local.pictures import (
    CONFUSION_MATRIX,
    HISTORY_FILE,
    NOT_RUN,
    PIPELINE_GRAPH,
    STATUS_COLOURS,
    TRAINING_CURVES,
    draw,
    graph_edges,
    graph_layout,
    load_execution,
    status_colours,
    trial_histories,
)
from pipeline.local.plan import check_definition
from pipeline.local.store import Store

EXECUTION_ID = "local-20260101T000000-abcd"
MODELS = "s3://b/models"
TUNING = "s3://b/tuning"
EVALUATION = f"s3://b/executions/{EXECUTION_ID}/evaluation"


# ------------------------------------------------------------------------ builders


def history(epochs: int, best: float = 0.8) -> dict:
    return {
        "hyperparameters": {"learning_rate": 0.01, "batch_size": 32, "optimizer": "adamw"},
        "epochs": [
            {
                "epoch": e,
                "train_loss": 2.0 / e,
                "train_accuracy": min(1.0, 0.3 + 0.2 * e),
                "valid_loss": 2.5 / e,
                "valid_accuracy": best * e / epochs,
            }
            for e in range(1, epochs + 1)
        ],
    }


def put_history(store: Store, output_path: str, job: str, document: dict) -> None:
    data = json.dumps(document).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        member = tarfile.TarInfo(HISTORY_FILE)
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    store.put_bytes(f"{output_path}/{job}/output/output.tar.gz", buffer.getvalue())


def png_bytes(colour: str = "navy") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (120, 90), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def definition(with_training: bool = True) -> dict:
    evaluate = {
        "Name": "Score",
        "Type": "Processing",
        "DisplayName": "Score the model",
        "Arguments": {},
        "PropertyFiles": [
            {"PropertyFileName": "Report", "OutputName": "report", "FilePath": "report.json"}
        ],
    }
    steps = [{"Name": "Prep", "Type": "Processing", "Arguments": {}}]
    if with_training:
        steps += [
            {"Name": "Search", "Type": "Tuning", "Arguments": {}, "DependsOn": ["Prep"]},
            {"Name": "Fit", "Type": "Training", "Arguments": {}, "DependsOn": ["Search", "Prep"]},
        ]
    evaluate["DependsOn"] = ["Fit" if with_training else "Prep"]
    steps += [
        evaluate,
        {
            "Name": "Gate",
            "Type": "Condition",
            "DependsOn": ["Score"],
            "Arguments": {
                "Conditions": [],
                "IfSteps": [
                    {"Name": "Register", "Type": "RegisterModel", "Arguments": {}},
                    {
                        "Name": "Publish",
                        "Type": "Model",
                        "Arguments": {},
                        "DependsOn": ["Register", "Score"],
                    },
                ],
                "ElseSteps": [{"Name": "Stop", "Type": "Fail", "Arguments": {}}],
            },
        },
    ]
    return {"Version": "2020-12-01", "Parameters": [], "Steps": steps}


def step(name: str, step_type: str, status: str, properties: dict | None = None, **extra) -> dict:
    return {
        "StepName": name,
        "StepType": step_type,
        "DisplayName": None,
        "Status": status,
        "Seconds": 1.5,
        "Properties": properties,
        **extra,
    }


def make_execution(
    tmp_path: Path,
    with_training: bool = True,
    statuses: dict[str, str] | None = None,
    confusion: bool = True,
) -> Path:
    """An execution folder as the runner leaves it; `statuses` overrides step statuses
    (None removes the step from the record: never reached)."""
    store = Store(tmp_path / "store")
    execution = store.executions / EXECUTION_ID
    execution.mkdir(parents=True)
    evaluation_outputs = {
        "Outputs": [
            {"OutputName": "other", "S3Output": {"S3Uri": "s3://b/other"}},
            {"OutputName": "report", "S3Output": {"S3Uri": EVALUATION}},
        ]
    }
    steps = [step("Prep", "Processing", "Succeeded", {"ProcessingOutputConfig": {}})]
    if with_training:
        trials = [
            {"Trial": n, "TrainingJobName": f"Search-{n:03d}", "Status": "Completed"}
            for n in (1, 2, 3)
        ]
        steps += [
            step(
                "Search",
                "Tuning",
                "Succeeded",
                {
                    "TrainingJobDefinition": {"OutputDataConfig": {"S3OutputPath": TUNING}},
                    "BestTrainingJob": {"TrainingJobName": "Search-002"},
                },
                Trials=trials,
            ),
            step(
                "Fit",
                "Training",
                "Cached",
                {"TrainingJobName": "Fit-job", "OutputDataConfig": {"S3OutputPath": MODELS}},
            ),
        ]
        put_history(store, MODELS, "Fit-job", history(4))
        for n, best in ((1, 0.4), (2, 0.8)):  # trial 3 left no history: drawn without it
            put_history(store, TUNING, f"Search-{n:03d}", history(4, best))
    steps += [
        step("Score", "Processing", "Succeeded", {"ProcessingOutputConfig": evaluation_outputs}),
        step("Gate", "Condition", "Succeeded", {"Outcome": True}),
        step("Stop", "Fail", "Skipped"),
        step("Register", "RegisterModel", "Succeeded", {}),
        step("Publish", "Model", "Failed", FailureReason="boom"),
    ]
    for name, status in (statuses or {}).items():
        if status is None:
            steps = [s for s in steps if s["StepName"] != name]
        for recorded in steps:
            if recorded["StepName"] == name:
                recorded.update(Status=status, FailureReason=None)
    if confusion:
        store.put_bytes(f"{EVALUATION}/{CONFUSION_MATRIX}", png_bytes())
        # A decoy: an output no PropertyFile reads, with a picture of the same name.
        store.put_bytes(f"s3://b/other/{CONFUSION_MATRIX}", png_bytes("red"))
    record = {
        "PipelineExecutionId": EXECUTION_ID,
        "PipelineName": "demo-pipeline",
        "Status": "Failed",
        "FailureReason": "step Publish failed: boom",
        "StartTime": "2026-01-01T00:00:00+00:00",
        "EndTime": "2026-01-01T00:02:05+00:00",
        "Steps": steps,
    }
    (execution / "record.json").write_text(json.dumps(record))
    (execution / "definition.json").write_text(json.dumps(definition(with_training)))
    return execution


def colour_pixels(path: Path, hex_colour: str) -> int:
    rgb = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    image = Image.open(path).convert("RGB")
    return sum(count for count, pixel in image.getcolors(1 << 20) if pixel == rgb)


# ------------------------------------------------------------------------- tests


def test_a_finished_execution_gets_three_pngs_of_sensible_size(tmp_path):
    execution = make_execution(tmp_path)
    drawn = draw(execution)
    assert drawn.folder == execution / "pictures"
    assert sorted(p.name for p in drawn.written) == sorted(
        [TRAINING_CURVES, CONFUSION_MATRIX, PIPELINE_GRAPH]
    )
    assert drawn.skipped == []
    for name in (TRAINING_CURVES, PIPELINE_GRAPH):
        path = drawn.folder / name
        with Image.open(path) as image:
            assert image.format == "PNG"
            width, height = image.size
            assert 500 <= width <= 2000 and 300 <= height <= 2500, (name, image.size)
            # Not a blank canvas: axes, text and curves give many colours.
            assert len(image.convert("RGB").getcolors(1 << 20)) > 50, name
        assert path.stat().st_size < 150_000
    # Copied as evaluate.py wrote it, from the output a PropertyFile reads, not the decoy.
    assert (execution / "pictures" / CONFUSION_MATRIX).read_bytes() == png_bytes()


def test_trials_are_found_through_the_tuning_step_s_record_not_by_name(tmp_path):
    execution = load_execution(make_execution(tmp_path))
    trials, best = trial_histories(execution)
    assert [t.label for t in trials] == ["Search-001", "Search-002"]
    assert best == "Search-002"
    assert [e["epoch"] for e in trials[1].epochs] == [1, 2, 3, 4]


def test_each_status_has_its_own_colour_and_unknown_ones_read_as_not_run():
    faces = {status: status_colours(status)[0] for status in STATUS_COLOURS}
    assert len(set(faces.values())) == len(faces)
    for status in ("Succeeded", "Cached", "Failed", "Skipped"):
        assert status_colours(status) != status_colours(None)
    assert status_colours(None) == STATUS_COLOURS[NOT_RUN]
    assert status_colours("SomethingNew") == STATUS_COLOURS[NOT_RUN]


def test_the_graph_colours_each_box_by_its_status_in_the_record(tmp_path):
    failed_face = STATUS_COLOURS["Failed"][0]
    cached_face = STATUS_COLOURS["Cached"][0]
    with_failure = draw(make_execution(tmp_path / "a")).folder / PIPELINE_GRAPH
    # Legend swatches are a few dozen pixels; a box is thousands.
    assert colour_pixels(with_failure, failed_face) > 2000
    assert colour_pixels(with_failure, cached_face) > 2000
    all_fine = make_execution(tmp_path / "b", statuses={"Publish": "Succeeded", "Fit": None})
    graph = draw(all_fine).folder / PIPELINE_GRAPH
    assert colour_pixels(graph, failed_face) < 500
    assert colour_pixels(graph, cached_face) < 500  # Fit is absent from the record: not run


def test_edges_keep_the_order_drop_implied_dependencies_and_label_the_branches():
    nodes = check_definition(definition())
    edges = {(e.parent, e.child): e.label for e in graph_edges(nodes)}
    assert edges == {
        ("Prep", "Search"): None,
        ("Search", "Fit"): None,  # Fit -> Prep is implied by Search
        ("Fit", "Score"): None,
        ("Score", "Gate"): None,
        ("Gate", "Register"): "true",
        ("Register", "Publish"): None,  # its Score and Gate dependencies come before
        ("Gate", "Stop"): "false",
    }
    layout = graph_layout(nodes, graph_edges(nodes))
    rows = {name: row for name, (row, _) in layout.items()}
    assert rows == {
        "Prep": 0,
        "Search": 1,
        "Fit": 2,
        "Score": 3,
        "Gate": 4,
        "Register": 5,
        "Stop": 5,
        "Publish": 6,
    }
    columns = {name: column for name, (_, column) in layout.items()}
    assert columns["Register"] < columns["Stop"]  # the true branch on the left
    assert abs(columns["Register"] - columns["Stop"]) >= 1  # side by side, not overlapping
    assert columns["Publish"] == columns["Register"]  # a chain stays straight


def test_a_record_without_a_training_step_still_draws_the_graph(tmp_path, caplog):
    execution = make_execution(tmp_path, with_training=False)
    with caplog.at_level("INFO", logger="pipeline.local"):
        drawn = draw(execution)
    assert sorted(p.name for p in drawn.written) == sorted([CONFUSION_MATRIX, PIPELINE_GRAPH])
    assert drawn.skipped == [f"{TRAINING_CURVES}: the execution has no Training step"]
    assert not (execution / "pictures" / TRAINING_CURVES).exists()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_missing_confusion_matrix_is_skipped_with_a_message_not_an_error(tmp_path, caplog):
    execution = make_execution(tmp_path, confusion=False)
    with caplog.at_level("INFO", logger="pipeline.local"):
        drawn = draw(execution)
    assert sorted(p.name for p in drawn.written) == sorted([TRAINING_CURVES, PIPELINE_GRAPH])
    (reason,) = drawn.skipped
    assert reason.startswith(f"{CONFUSION_MATRIX}: no Processing output")
    assert any(
        "skipped" in r.getMessage() and CONFUSION_MATRIX in r.getMessage() for r in caplog.records
    )
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_corrupt_history_is_a_warning_and_the_other_pictures_are_still_drawn(tmp_path, caplog):
    execution = make_execution(tmp_path)
    archive = Store(tmp_path / "store").path(f"{MODELS}/Fit-job/output/output.tar.gz")
    archive.chmod(0o644)
    archive.write_bytes(b"not a tar archive")
    with caplog.at_level("INFO", logger="pipeline.local"):
        drawn = draw(execution)
    assert sorted(p.name for p in drawn.written) == sorted([CONFUSION_MATRIX, PIPELINE_GRAPH])
    assert drawn.skipped[0].startswith(f"{TRAINING_CURVES}: ReadError")
    assert any(
        r.levelname == "WARNING" and TRAINING_CURVES in r.getMessage() for r in caplog.records
    )


def test_importing_the_cli_and_the_pictures_module_does_not_load_matplotlib():
    code = (
        "import sys; import pipeline.local.pictures; from pipeline.cli import build_parser; "
        "build_parser(); print('matplotlib' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# ------------------------------------------------------------------- after a run

WRITE_PICTURE = """
import os, sys
from PIL import Image
out = sys.argv[sys.argv.index("--out") + 1]
os.makedirs(out, exist_ok=True)
Image.new("RGB", (64, 48), "navy").save(os.path.join(out, "confusion_matrix.png"))
"""


def picture_definition() -> dict:
    return {
        "Version": "2020-12-01",
        "Parameters": [],
        "Steps": [
            {
                "Name": "Evaluate",
                "Type": "Processing",
                "Arguments": {
                    "AppSpecification": {
                        "ContainerEntrypoint": ["python3", "-c", WRITE_PICTURE],
                        "ContainerArguments": ["--out", "/opt/ml/processing/evaluation"],
                    },
                    "ProcessingOutputConfig": {
                        "Outputs": [
                            {
                                "OutputName": "evaluation",
                                "S3Output": {
                                    "S3Uri": "s3://b/evaluation",
                                    "LocalPath": "/opt/ml/processing/evaluation",
                                    "S3UploadMode": "EndOfJob",
                                },
                            }
                        ]
                    },
                },
            }
        ],
    }


def run_local(tmp_path: Path) -> tuple[int, Path]:
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(picture_definition()))
    store = tmp_path / "store"
    code = main(["run-local", "--definition", str(path), "--store", str(store)])
    (execution,) = (store / "executions").iterdir()
    return code, execution


def test_run_local_leaves_the_pictures_beside_the_record_and_says_where(tmp_path, capsys):
    code, execution = run_local(tmp_path)
    assert code == 0
    folder = execution / "pictures"
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFUSION_MATRIX, PIPELINE_GRAPH])
    err = capsys.readouterr().err
    assert f"pictures: {folder}" in err
    assert f"{TRAINING_CURVES} skipped: the execution has no Training step" in err


def test_a_drawing_failure_never_fails_the_run(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no fonts today")

    monkeypatch.setattr(pictures, "draw", broken)
    code, execution = run_local(tmp_path)
    assert code == 0
    assert json.loads((execution / "record.json").read_text())["Status"] == "Succeeded"
    assert "warning: no pictures of this execution: RuntimeError: no fonts today" in (
        capsys.readouterr().err
    )


def test_without_the_saved_definition_the_graph_is_skipped_and_the_rest_drawn(tmp_path):
    execution = make_execution(tmp_path)
    (execution / "definition.json").unlink()
    drawn = draw(execution)
    assert sorted(p.name for p in drawn.written) == sorted([TRAINING_CURVES, CONFUSION_MATRIX])
    assert drawn.skipped == [f"{PIPELINE_GRAPH}: no definition.json beside the record"]
