"""`export --debugger pipeline` under the image mirror: no Debugger field on any job, train.py
hooks itself (smdebug from the bundled wheel, the image's protobuf and numpy), and the
CheckTrainingRules processing job runs check_rules.py over TrainModel's output.tar.gz with
the container venv's Python and the ContainerArguments of the definition, offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.datagen import make_imagefolder
from parity.test_training_toolkit import OVERRIDES, _quick, run_offline

from pipeline.config import PipelineConfig
from pipeline.definition import definition_json
from pipeline.local.runner import Options
from pipeline.local.store import Store


@pytest.fixture(scope="module")
def execution(container_python, tmp_path_factory):
    work = tmp_path_factory.mktemp("parity-rules")
    data = make_imagefolder(work / "data", 3, {"train": 6, "valid": 3, "test": 3}, seed=4)
    config = PipelineConfig(debugger="pipeline", enable_network_isolation=True)
    definition = _quick(json.loads(definition_json(config)))
    options = Options(
        store=work / "store",
        parameters=OVERRIDES + [("AccuracyThreshold", "0.0")],
        input=data,
        max_trials=1,
        max_epochs=1,
        container_python=Path(container_python),
    )
    return run_offline(definition, options), Store(work / "store")


def test_the_rules_step_runs_in_the_image_and_reads_what_train_model_saved(
    execution, container_python
):
    outcome, store = execution
    failed = [(s["StepName"], s.get("FailureReason")) for s in outcome.record["Steps"]]
    assert outcome.succeeded, failed
    step = outcome.step("CheckTrainingRules")
    log = Path(step["LogPath"]).read_text(errors="replace")
    assert log.startswith(f"$ {container_python} ")
    outputs = step["Properties"]["ProcessingOutputConfig"]["Outputs"]
    (rules_output,) = [o for o in outputs if o["OutputName"] == "rules"]
    report = json.loads((store.path(rules_output["S3Output"]["S3Uri"]) / "rules.json").read_text())
    statuses = {rule["name"]: rule for rule in report["rules"]}
    assert set(statuses) == {
        "VanishingGradient", "Overfit", "Overtraining", "PoorWeightInitialization",
    }  # fmt: skip
    # The tensors arrived: no rule is short of data, and each says what it read.
    assert {r["status"] for r in statuses.values()} <= {"NoIssuesFound", "IssuesFound"}, statuses
    assert statuses["VanishingGradient"]["tensors"] > 0
    assert statuses["PoorWeightInitialization"]["tensors"] > 0


def test_train_model_carried_no_debugger_configuration(execution):
    outcome, _ = execution
    properties = outcome.step("TrainModel")["Properties"]
    for key in ("DebugHookConfig", "DebugRuleConfigurations", "ProfilerRuleConfigurations"):
        assert key not in properties
    log = Path(outcome.step("TrainModel")["LogPath"]).read_text(errors="replace")
    assert "installed from the bundled smdebug" in log
