"""The champion/challenger gate end to end: three `run-local`s on one store.

A first model (trained with a learning rate too small to learn anything) is deployed with
nothing to compare it with; a model that learns replaces it; a third that learns nothing again
is worse than the serving one, so the execution ends in the gate's FailStep naming both figures,
and nothing is registered or deployed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.datagen import make_imagefolder
from helpers.definitions import step
from helpers.paths import ROOT

from pipeline.config import DEFAULT_ENDPOINT_NAME, PipelineConfig
from pipeline.definition import definition_dict
from pipeline.local import registry
from pipeline.local.store import Store

GROUP = PipelineConfig().model_package_group
# Three whole run-locals, each with a trial and TrainModel: minutes on a shared machine.
pytestmark = pytest.mark.timeout(2400)


def with_learning_rate(definition: dict, rate: str) -> dict:
    """The definition with TrainModel's learning rate fixed instead of the best trial's."""
    definition = json.loads(json.dumps(definition))
    step(definition, "TrainModel")["Arguments"]["HyperParameters"]["learning_rate"] = rate
    return definition


class Runs:
    def __init__(self, root: Path):
        self.root = root
        self.store = root / "store"
        self.data = make_imagefolder(
            root / "data", 4, {"train": 16, "valid": 4, "test": 8}, seed=11
        )
        # Without Debugger: its rules would only add minutes here.
        self.definition = definition_dict(PipelineConfig(debugger="off"))

    def run(self, label: str, rate: str, epochs: int) -> tuple[subprocess.CompletedProcess, dict]:
        path = self.root / f"{label}.json"
        path.write_text(json.dumps(with_learning_rate(self.definition, rate)))
        result = subprocess.run(
            [
                sys.executable, "-m", "pipeline.cli", "run-local",
                "--definition", str(path),
                "--store", str(self.store),
                "--input", str(self.data),
                "--max-trials", "1",
                "--max-epochs", str(epochs),
                "--workers", "2",
                *("--param", "ImageSize=32", "--param", "MaxImageSide=40"),
                *("--param", "Pretrained=false", "--param", "AccuracyThreshold=0"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1200,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        execution = result.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]
        record = self.store / "executions" / execution / "record.json"
        return result, json.loads(record.read_text())

    def evaluation(self, record: dict) -> dict:
        evaluate = next(s for s in record["Steps"] if s["StepName"] == "EvaluateModel")
        (output,) = evaluate["Properties"]["ProcessingOutputConfig"]["Outputs"]
        uri = output["S3Output"]["S3Uri"].rstrip("/") + "/evaluation.json"
        return json.loads(Store(self.store).path(uri).read_text())

    def served(self) -> str:
        endpoint = self.store / "endpoints" / f"{DEFAULT_ENDPOINT_NAME}.json"
        return json.loads(endpoint.read_text())["ModelDataUrl"]

    def versions(self) -> list[dict]:
        return registry.versions(self.store / "registry", GROUP)


def trained(record: dict) -> str:
    train = next(s for s in record["Steps"] if s["StepName"] == "TrainModel")
    return train["Properties"]["ModelArtifacts"]["S3ModelArtifacts"]


def statuses(record: dict) -> dict[str, str]:
    return {s["StepName"]: s["Status"] for s in record["Steps"]}


def test_a_worse_model_is_neither_registered_nor_deployed_and_a_better_one_is(tmp_path):
    runs = Runs(tmp_path)

    # 1. Nothing serves yet: a first deployment, compared with nothing.
    result, first = runs.run("first", "1e-09", 1)
    assert result.returncode == 0, result.stderr[-3000:]
    report = runs.evaluation(first)
    assert report["champion"]["status"] == "none"
    assert report["champion_gate"]["passed"] is True
    assert runs.served() == trained(first)
    weak = report["champion_gate"]["challenger"]

    # 2. A model that learns: the serving one is scored too, with the same figure it had.
    result, second = runs.run("better", "0.003", 4)
    assert result.returncode == 0, result.stderr[-3000:]
    report = runs.evaluation(second)
    gate = report["champion_gate"]
    assert report["champion"]["status"] == "serving"
    assert report["champion"]["model_data"] == trained(first)
    assert gate["champion"] == weak
    assert gate["challenger"] > weak, "the learning run should beat the one that cannot learn"
    assert gate["passed"] is True
    assert statuses(second)["DeployEndpoint"] == "Succeeded"
    assert runs.served() == trained(second)
    assert len(runs.versions()) == 2

    # 3. One that learns nothing again: worse than the serving model, so it stops.
    result, third = runs.run("worse", "1e-09", 2)
    assert result.returncode == 1, result.stderr[-3000:]
    report = runs.evaluation(third)
    gate = report["champion_gate"]
    assert gate["passed"] is False
    assert gate["champion"] == runs.evaluation(second)["champion_gate"]["challenger"]
    message = (
        f"Champion/challenger: the new model's accuracy {gate['challenger']:.4f} is below the "
        f"serving model's {gate['champion']:.4f} on the same test split"
    )
    assert message in result.stderr
    assert third["FailureReason"].startswith("step ChampionGateFailed failed: " + message)
    done = statuses(third)
    assert done["ChampionGateFailed"] == "Failed"
    for name in ("RegisterModel-RegisterModel", "CheckApproval", "DeployEndpoint"):
        assert done[name] == "Skipped", name
    assert len(runs.versions()) == 2
    assert runs.served() == trained(second)
