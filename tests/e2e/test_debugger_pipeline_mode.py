"""`export --debugger pipeline` run end to end by run-local, on tiny data.

No Debugger configuration reaches TrainModel: train.py saves the tensors and timing.json
into output.tar.gz itself, CheckTrainingRules runs check_rules.py over that archive, and the
CheckRuleFindings gate reads its rules.json. VanishingGradient's threshold is raised so that
every gradient is "vanishing": the rule reports IssuesFound whatever the tiny run learns.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from helpers.datagen import make_imagefolder
from test_local_runner import OVERRIDES, quick, run_cli, step_of

from pipeline.local.store import Store


def tripping(definition: dict) -> dict:
    """The definition with VanishingGradient's threshold above any gradient's mean |g|."""
    arguments = step_of(definition, "CheckTrainingRules")["Arguments"]["AppSpecification"]
    container = arguments["ContainerArguments"]
    index = container.index("--rules") + 1
    rules = json.loads(container[index])
    assert rules[0]["RuleConfigurationName"] == "VanishingGradient"
    rules[0]["RuleParameters"]["threshold"] = "1e9"
    container[index] = json.dumps(rules)
    return definition


class Runs:
    def __init__(self, root: Path):
        from pipeline.config import PipelineConfig
        from pipeline.definition import definition_json

        self.store = root / "store"
        self.definition = tripping(
            quick(json.loads(definition_json(PipelineConfig(debugger="pipeline"))))
        )
        self.path = root / "definition.json"
        self.path.write_text(json.dumps(self.definition))
        self.runs = {}

    def run(self, label: str, *args: str):
        self.runs[label] = run_cli(
            "--definition", str(self.path), "--store", str(self.store),
            "--max-trials", "1", "--max-epochs", "1", "--workers", "2",
            "--param", "AccuracyThreshold=0",
            *[item for override in OVERRIDES for item in ("--param", override)],
            *args,
        )  # fmt: skip
        return self.runs[label]

    def record(self, label: str) -> dict:
        arn = self.runs[label].stdout.strip().splitlines()[-1]
        execution = arn.rsplit("/", 1)[-1]
        return json.loads((self.store / "executions" / execution / "record.json").read_text())


def steps_by_name(record: dict) -> dict[str, dict]:
    return {step["StepName"]: step for step in record["Steps"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    root = tmp_path_factory.mktemp("debugger-pipeline")
    data = make_imagefolder(root / "data", 3, {"train": 6, "valid": 3, "test": 3}, seed=3)
    runs = Runs(root)
    runs.run("reported", "--input", str(data))
    # The same definition again: every job step comes from the cache, only the gate differs.
    runs.run("blocked", "--param", "RuleIssuesBlockRegistration=true")
    return runs


def test_train_model_ships_its_tensors_and_timing_in_output_tar_gz(runs):
    result = runs.runs["reported"]
    assert result.returncode == 0, result.stderr[-3000:]
    steps = steps_by_name(runs.record("reported"))
    training = steps["TrainModel"]
    # No Debugger on the job: no rule statuses, no ProfilerReport.
    assert "RuleEvaluations" not in training and "ProfilerReport" not in training
    assert "DebugRuleEvaluationStatuses" not in training["Properties"]
    properties = training["Properties"]
    uri = "/".join(
        [properties["OutputDataConfig"]["S3OutputPath"], properties["TrainingJobName"]]
        + ["output", "output.tar.gz"]
    )
    with tarfile.open(Store(runs.store).path(uri)) as archive:
        names = archive.getnames()
        timing = json.load(archive.extractfile("timing.json"))
    assert any(name.startswith("tensors/events/") for name in names)
    assert "history.json" in names
    assert [record["epoch"] for record in timing] == [1]
    assert timing[0]["steps"] >= 1 and timing[0]["step_seconds_p50"] > 0


def test_the_rules_step_writes_rules_json_from_the_archive(runs):
    steps = steps_by_name(runs.record("reported"))
    rules_step = steps["CheckTrainingRules"]
    assert rules_step["Status"] == "Succeeded"
    output = rules_step["Properties"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    report = json.loads(Store(runs.store).path(f"{output}/rules.json").read_text())
    statuses = {rule["name"]: rule["status"] for rule in report["rules"]}
    assert list(statuses) == [
        "VanishingGradient",
        "Overfit",
        "Overtraining",
        "PoorWeightInitialization",
    ]
    assert statuses["VanishingGradient"] == "IssuesFound"
    assert report["finding"].startswith("VanishingGradient: ")
    # Every rule read tensors: the hook saved what each needs (the ReLU inputs included).
    assert all(rule["tensors"] > 0 for rule in report["rules"]), report["rules"]
    assert report["no_data"] == 0 and report["errors"] == 0
    assert report["profiler"]["epochs"] == 1
    assert Store(runs.store).path(f"{output}/report.md").is_file()


def test_by_default_a_finding_is_reported_and_the_model_registered(runs):
    steps = steps_by_name(runs.record("reported"))
    assert steps["CheckRuleFindings"]["Properties"]["Outcome"] is True
    assert steps["RegisterModel-RegisterModel"]["Status"] == "Succeeded"
    assert steps["RuleIssuesFound"]["Status"] == "Skipped"


def test_with_the_gate_on_the_fail_step_names_the_rule_and_its_finding(runs):
    result = runs.runs["blocked"]
    assert result.returncode == 1, result.stderr[-3000:]
    record = runs.record("blocked")
    steps = steps_by_name(record)
    assert steps["TrainModel"]["Status"] == "Cached"
    assert steps["CheckTrainingRules"]["Status"] == "Cached"
    assert steps["CheckRuleFindings"]["Properties"]["Outcome"] is False
    assert steps["RegisterModel-RegisterModel"]["Status"] == "Skipped"
    assert steps["RuleIssuesFound"]["Status"] == "Failed"
    reason = record["FailureReason"]
    assert reason.startswith("step RuleIssuesFound failed: Debugger rule VanishingGradient: ")
    assert "RuleIssuesBlockRegistration is true" in reason
    assert "VanishingGradient" in result.stderr


def test_service_mode_decides_the_same_on_the_same_tensors(runs, tmp_path):
    """run-local's service mode (in place of AWS's rule containers) evaluates the service
    definition's DebugRuleConfigurations, with the same tripped threshold, over the tensors the
    pipeline-mode TrainModel saved: every rule gets the status the rules step gave it."""
    from pipeline.config import PipelineConfig
    from pipeline.definition import definition_json
    from pipeline.local.container import Job
    from pipeline.local.supervisor import Supervisor
    from pipeline.local.training_job import _evaluate_rules

    steps = steps_by_name(runs.record("reported"))
    properties = steps["TrainModel"]["Properties"]
    store = Store(runs.store)
    archive_uri = "/".join(
        [properties["OutputDataConfig"]["S3OutputPath"], properties["TrainingJobName"]]
        + ["output", "output.tar.gz"]
    )
    job = Job(store, "service-rules", tmp_path / "job", tmp_path / "job.log", "rules", Supervisor())
    with tarfile.open(store.path(archive_uri)) as archive:
        archive.extractall(job.opt_ml / "output" / "data", filter="data")
    code = job.opt_ml / "code"
    code.mkdir(parents=True)
    with tarfile.open(
        store.path(json.loads(properties["HyperParameters"]["sagemaker_submit_directory"]))
    ) as tar:
        tar.extractall(code, filter="data")

    service = json.loads(definition_json(PipelineConfig()))
    rules = step_of(service, "TrainModel")["Arguments"]["DebugRuleConfigurations"]
    for rule in rules:
        if rule["RuleConfigurationName"] == "VanishingGradient":
            rule["RuleParameters"]["threshold"] = "1e9"  # as tripping() does
    service_statuses = {
        status["RuleConfigurationName"]: status["RuleEvaluationStatus"]
        for status in _evaluate_rules(job, rules, job.opt_ml / "output" / "data" / "tensors")
    }
    output = steps["CheckTrainingRules"]["Properties"]["ProcessingOutputConfig"]["Outputs"][0]
    report = json.loads(store.path(f"{output['S3Output']['S3Uri']}/rules.json").read_text())
    assert service_statuses == {rule["name"]: rule["status"] for rule in report["rules"]}
    assert service_statuses["VanishingGradient"] == "IssuesFound"
