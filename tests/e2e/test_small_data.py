"""A new user's small folder, from scratch: 6 classes, about 100 training images.

run-local either learns above chance or says clearly that it did not: a learnable folder
(distinct colours and stripes per class) must score above what guessing reaches, and a folder
of random pixels must end with the warning, in the job log, on the console as the job runs and
in the run's closing summary. Before the batch was capped to the data, a batch of 32 or 64 made
one to three optimizer steps an epoch and both runs ended green at chance without a word.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.datagen import make_imagefolder
from helpers.paths import ROOT

from dogbreed_jobs import learning_checks
from pipeline.config import PipelineConfig
from pipeline.definition import definition_json

NUM_CLASSES = 6
PER_CLASS = {"train": 17, "valid": 5, "test": 5}  # 102 training images
# A whole run-local each (a trial and TrainModel of 5 epochs): minutes on a shared machine.
LONG = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def definition(tmp_path_factory) -> Path:
    # Without Debugger: its rules would only add minutes here.
    path = tmp_path_factory.mktemp("definition") / "definition.json"
    path.write_text(definition_json(PipelineConfig(debugger="off")))
    return path


def run_local(
    root: Path, definition: Path, noise: bool
) -> tuple[subprocess.CompletedProcess, dict]:
    data = make_imagefolder(root / "data", NUM_CLASSES, PER_CLASS, seed=5, noise=noise)
    store = root / "store"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run-local",
            "--definition",
            str(definition),
            "--store",
            str(store),
            "--input",
            str(data),
            "--max-trials",
            "1",
            "--max-epochs",
            "5",
            *("--param", "ImageSize=32", "--param", "MaxImageSide=40"),
            *("--param", "Pretrained=false", "--param", "AccuracyThreshold=0"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1700,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    execution = result.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]
    record = json.loads((store / "executions" / execution / "record.json").read_text())
    return result, record


def _step(record: dict, name: str) -> dict:
    return next(step for step in record["Steps"] if step["StepName"] == name)


@LONG
def test_a_learnable_small_folder_learns_above_chance(tmp_path, definition):
    result, record = run_local(tmp_path, definition, noise=False)
    train_log = Path(_step(record, "TrainModel")["LogPath"]).read_text()
    assert "capped to" in train_log and "optimizer steps an epoch" in train_log
    evaluation = next((tmp_path / "store").glob("s3/**/evaluation.json"))
    report = json.loads(evaluation.read_text())
    accuracy = report["multiclass_classification_metrics"]["accuracy"]["value"]
    images = report["details"]["num_images"]
    assert accuracy > learning_checks.chance_bound(NUM_CLASSES, images), result.stderr[-3000:]
    assert "within noise of chance" not in result.stderr


@LONG
def test_a_folder_of_noise_says_it_did_not_learn(tmp_path, definition):
    result, record = run_local(tmp_path, definition, noise=True)
    train_log = Path(_step(record, "TrainModel")["LogPath"]).read_text()
    warnings = [
        line for line in train_log.splitlines() if line.startswith(learning_checks.WARNING_PREFIX)
    ]
    assert len(warnings) >= 1 and "validation accuracy" in warnings[0], train_log[-2000:]
    assert "within noise of chance" in warnings[0]
    produced = result.stderr[result.stderr.index(" produced:") :]
    # The closing summary repeats it and applies the same test to the test split.
    assert "warning: validation accuracy" in produced
    assert "warning: test accuracy" in produced
    # On the console while the job ran, too.
    assert "[TrainModel] warning: validation accuracy" in result.stderr
