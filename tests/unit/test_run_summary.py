"""run-local's closing summary (pipeline/local/summary.py) names a model that did not learn."""

from __future__ import annotations

import json

from dogbreed_jobs import contract, learning_checks
from pipeline.local import summary
from pipeline.local.store import Store

EVALUATION_URI = "s3://bucket/executions/x/evaluation"


def _record(log_path, accuracy: float, tmp_path, **extra) -> dict:
    report = {
        "multiclass_classification_metrics": {"accuracy": {"value": accuracy}},
        "details": {"num_classes": 6, "num_images": 30, "macro_f1": 0.1},
        **extra,
    }
    Store(tmp_path / "store").put_bytes(
        f"{EVALUATION_URI}/{contract.EVALUATION_FILE}", json.dumps(report).encode()
    )
    evaluation = {"OutputName": contract.EVALUATION_OUTPUT, "S3Output": {"S3Uri": EVALUATION_URI}}
    return {
        "PipelineExecutionId": "local-x",
        "Steps": [
            {"StepType": "Training", "Status": "Succeeded", "LogPath": str(log_path)},
            {
                "StepType": "Processing",
                "Status": "Succeeded",
                "Properties": {"ProcessingOutputConfig": {"Outputs": [evaluation]}},
            },
        ],
    }


def test_the_summary_repeats_the_training_warning_and_tests_the_test_accuracy(tmp_path):
    warning = learning_checks.near_chance(0.167, 6, 30, "validation")
    log = tmp_path / "TrainModel.log"
    log.write_text(f"METRICS epoch=1 valid_accuracy=0.167\n{warning}\nmodel written\n")
    lines = summary.lines(_record(log, 0.2, tmp_path), tmp_path / "store")
    warnings = [line.strip() for line in lines if "warning:" in line]
    assert warnings[0] == contract.parse_notice(warning)
    assert warnings[1].startswith("warning: test accuracy 0.200 is within noise of chance")
    assert len(warnings) == 2


def test_a_model_that_learnt_gets_no_warning(tmp_path):
    log = tmp_path / "TrainModel.log"
    log.write_text("METRICS epoch=1 valid_accuracy=0.9\n")
    lines = summary.lines(_record(log, 0.9, tmp_path), tmp_path / "store")
    assert not [line for line in lines if "warning" in line]
    assert any("test accuracy 0.900" in line for line in lines)


def test_the_summary_says_how_the_new_model_fared_against_the_serving_one(tmp_path):
    log = tmp_path / "TrainModel.log"
    log.write_text("METRICS epoch=1 valid_accuracy=0.9\n")
    gate = {"passed": False, "reason": "the new model's accuracy 0.8000 is below 0.9000"}
    lines = summary.lines(_record(log, 0.8, tmp_path, champion_gate=gate), tmp_path / "store")
    assert "  champion     gate failed: the new model's accuracy 0.8000 is below 0.9000" in lines
