"""`export --debugger pipeline` under the image mirror: no Debugger field on any job, train.py
hooks itself (smdebug from the bundled wheel, the image's protobuf and numpy), and the
CheckTrainingRules processing job runs check_rules.py over TrainModel's output.tar.gz with
the container venv's Python and the ContainerArguments of the definition, offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from parity.conftest import offline_execution

from pipeline.config import PipelineConfig


@pytest.fixture(scope="module")
def execution(container_python, tmp_path_factory):
    config = PipelineConfig(debugger="pipeline", enable_network_isolation=True)
    work = tmp_path_factory.mktemp("parity-rules")
    return offline_execution(container_python, work, config, seed=4, max_trials=1)


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
