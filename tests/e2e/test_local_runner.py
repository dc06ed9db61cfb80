"""The local runner: real runs of the pipeline definition on tiny data, plus fast checks.

One end-to-end run of the exported definition (module fixture) is shared by the slow
assertions; two more runs on the same store reuse its cache and take seconds. The fast
tests run small hand-written definitions (conditions, FailStep, registry, endpoints) and
the up-front checks, without any job.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from helpers.datagen import make_imagefolder
from helpers.paths import ROOT

from pipeline.cli import main
from pipeline.definition_json import iter_steps, own_expressions, references
from pipeline.local import expressions as ex
from pipeline.local import registry
from pipeline.local.cache import StepCache, parse_duration
from pipeline.local.plan import DefinitionError, check_definition
from pipeline.local.runner import Options, run
from pipeline.local.store import Store
from pipeline.local.supervisor import JobFailed
from pipeline.local.training_job import TrainingResult, clamp_epochs
from pipeline.local.tuning import TuningError, TuningRun, run_tuning, sample

ENDPOINT = "dogbreed-classifier"
GROUP = "dogbreed-classifier"
# Small enough for two shared CPU cores; MaxImageSide and ImageSize differ from their
# defaults so the test sees the overrides arrive.
OVERRIDES = ["ImageSize=32", "MaxImageSide=40", "Pretrained=false"]


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def exported() -> dict:
    """The real definition, as `run-local` exports it (Debugger rules and profiler on)."""
    from pipeline.config import PipelineConfig
    from pipeline.definition import definition_json

    return json.loads(definition_json(PipelineConfig()))


def step_of(definition: dict, name: str) -> dict:
    for entry in iter_steps(definition):
        if entry.name == name:
            return entry.step
    raise KeyError(name)


def quick(definition: dict) -> dict:
    """The exported definition with two changes that only speed the test up.

    Batch sizes the tiny dataset can fill (the published 32-64 need 64+ images), and no
    per-execution checkpoint URI: it is in TrainModel's cache key, so with it TrainModel
    (and the evaluation after it) could never be reused, locally as on SageMaker.
    """
    definition = copy.deepcopy(definition)
    tuning = step_of(definition, "TuneHyperparameters")["Arguments"]
    ranges = tuning["HyperParameterTuningJobConfig"]["ParameterRanges"]
    for spec in ranges["CategoricalParameterRanges"]:
        if spec["Name"] == "batch_size":
            spec["Values"] = ['"4"', '"6"']
    step_of(definition, "TrainModel")["Arguments"].pop("CheckpointConfig")
    return definition


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run-local", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**(os.environ if env is None else env), "PYTHONPATH": str(ROOT)},
    )


class Pipeline:
    """The store of the shared runs and what each left behind."""

    def __init__(self, root: Path, definition: dict):
        self.root = root
        self.store = root / "store"
        self.definition_path = root / "definition.json"
        self.definition_path.write_text(json.dumps(definition))
        self.runs: dict[str, subprocess.CompletedProcess] = {}

    def run(self, label: str, *args: str, definition: Path | None = None):
        self.runs[label] = run_cli(
            "--definition",
            str(definition or self.definition_path),
            "--store",
            str(self.store),
            "--max-trials",
            "2",
            "--max-epochs",
            "1",
            "--workers",
            "2",
            *[item for override in OVERRIDES for item in ("--param", override)],
            *args,
        )
        return self.runs[label]

    def record(self, label: str) -> dict:
        arn = self.runs[label].stdout.strip().splitlines()[-1]
        execution = arn.rsplit("/", 1)[-1]
        return json.loads((self.store / "executions" / execution / "record.json").read_text())

    def object(self, uri: str) -> Path:
        return Store(self.store).path(uri)


def steps_by_name(record: dict) -> dict[str, dict]:
    return {step["StepName"]: step for step in record["Steps"]}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, exported) -> Pipeline:
    root = tmp_path_factory.mktemp("run-local")
    data = make_imagefolder(root / "data", 3, {"train": 6, "valid": 3, "test": 3}, seed=3)
    runs = Pipeline(root, quick(exported))
    runs.run("deployed", "--input", str(data), "--param", "AccuracyThreshold=0")
    # Accuracy is at most 1, so with the condition made strict a threshold of 1 always ends in
    # the FailStep (a threshold above 1 is refused up front); the job steps stay cached.
    strict = quick(exported)
    step_of(strict, "CheckAccuracy")["Arguments"]["Conditions"][0]["Type"] = "GreaterThan"
    strict_path = root / "strict.json"
    strict_path.write_text(json.dumps(strict))
    runs.run("below threshold", "--param", "AccuracyThreshold=1", definition=strict_path)
    typo = quick(exported)
    condition = step_of(typo, "CheckAccuracy")["Arguments"]["Conditions"][0]
    condition["LeftValue"]["Std:JsonGet"]["Path"] = (
        "multiclass_classification_metrics.acuracy.value"
    )
    typo_path = root / "typo.json"
    typo_path.write_text(json.dumps(typo))
    runs.run("json path typo", "--param", "AccuracyThreshold=0", definition=typo_path)
    return runs


# ---------------------------------------------------------------- end to end runs


def test_a_full_run_registers_and_deploys_when_accuracy_reaches_the_threshold(pipeline):
    result = pipeline.runs["deployed"]
    assert result.returncode == 0, result.stderr
    record = pipeline.record("deployed")
    assert record["Status"] == "Succeeded"
    steps = steps_by_name(record)
    assert steps["AccuracyBelowThreshold"]["Status"] == "Skipped"
    for name in ("PrepareData", "TuneHyperparameters", "TrainModel", "EvaluateModel"):
        assert steps[name]["Status"] == "Succeeded"
    for log in [steps[name]["LogPath"] for name in ("PrepareData", "TrainModel", "EvaluateModel")]:
        assert Path(log).is_file()
    for trial in steps["TuneHyperparameters"]["Trials"]:
        assert Path(trial["LogPath"]).is_file()
    model_url = steps["TrainModel"]["Properties"]["ModelArtifacts"]["S3ModelArtifacts"]

    (version,) = registry.versions(pipeline.store / "registry", GROUP)
    evaluation_uri = steps["EvaluateModel"]["Properties"]["ProcessingOutputConfig"]["Outputs"][0]
    evaluation = json.loads(
        (pipeline.object(evaluation_uri["S3Output"]["S3Uri"]) / "evaluation.json").read_text()
    )
    assert version["ModelMetrics"] == evaluation
    assert version["ModelDataUrl"] == model_url
    assert version["ModelApprovalStatus"] == "Approved"
    assert version["ExecutionArn"] == record["PipelineExecutionArn"]

    endpoint = json.loads((pipeline.store / "endpoints" / f"{ENDPOINT}.json").read_text())
    assert endpoint["ModelDataUrl"] == model_url
    assert Path(endpoint["ModelDataPath"]) == pipeline.object(model_url)
    assert Path(endpoint["ModelDataPath"]).is_file()
    assert endpoint["ModelPackageArn"] == version["ModelPackageArn"]
    # The Ray Serve image runs the config.yaml packed at the root; the environment carries only
    # the evaluation's bf16 verdict, which reaches the endpoint and the registered version.
    with tarfile.open(endpoint["ModelDataPath"]) as tar:
        assert "config.yaml" in tar.getnames()
    verdict = evaluation["serving"]["environment"]["DOGBREED_BF16_ALLOWED"]
    assert verdict in ("true", "false")
    assert endpoint["Environment"] == {"DOGBREED_BF16_ALLOWED": verdict}
    (container,) = version["InferenceSpecification"]["Containers"]
    assert container["Environment"]["DOGBREED_BF16_ALLOWED"] == verdict
    assert "METRICS" not in result.stdout  # stdout is the ARN; progress goes to stderr
    assert "valid_accuracy=" in result.stderr  # METRICS lines echoed as progress
    # It ends with what it produced and the commands that serve and ask the model.
    produced = result.stderr[result.stderr.index(f"{record['PipelineExecutionId']} produced:") :]
    assert f"  model        {endpoint['ModelDataPath']}" in produced
    assert f"registered   {GROUP} version {version['ModelPackageVersion']} (Approved)" in produced
    assert f"endpoint     {ENDPOINT} (" in produced and "; created)" in produced
    assert f"serve-local --store {pipeline.store} --endpoint {ENDPOINT}" in produced
    # The DeployEndpoint job created the endpoint (nothing to roll back to on a first
    # deployment) and registered its autoscaling; run-local made the alarms infra/ would.
    assert steps["DeployEndpoint"]["Status"] == "Succeeded"
    assert (
        f"endpoint {ENDPOINT} created on {endpoint['EndpointConfigName']}"
        in Path(steps["DeployEndpoint"]["LogPath"]).read_text()
    )
    scaling = json.loads((pipeline.store / "scaling" / f"{ENDPOINT}.AllTraffic.json").read_text())
    assert (scaling["Target"]["MinCapacity"], scaling["Target"]["MaxCapacity"]) == (1, 4)
    assert sorted(p.stem for p in (pipeline.store / "alarms").iterdir()) == [
        f"{ENDPOINT}-5xx-rate",
        f"{ENDPOINT}-model-latency",
    ]


def test_parameter_overrides_reach_the_scripts(pipeline):
    steps = steps_by_name(pipeline.record("deployed"))
    assert pipeline.record("deployed")["Parameters"]["ImageSize"] == 32
    meta = steps["PrepareData"]["Properties"]["ProcessingOutputConfig"]["Outputs"][3]
    assert meta["OutputName"] == "meta"
    manifest = json.loads(
        (pipeline.object(meta["S3Output"]["S3Uri"]) / "manifest.json").read_text()
    )
    assert manifest["settings"]["max_side"] == 40
    model = pipeline.object(steps["TrainModel"]["Properties"]["ModelArtifacts"]["S3ModelArtifacts"])
    with tarfile.open(model) as tar:
        settings = json.load(tar.extractfile("model_settings.json"))
    assert settings["image_size"] == 32
    assert settings["num_classes"] == 3


def test_the_best_trial_s_hyperparameters_reach_the_training_job(pipeline):
    steps = steps_by_name(pipeline.record("deployed"))
    tuning = steps["TuneHyperparameters"]
    trials = tuning["Trials"]
    assert [trial["Status"] for trial in trials] == ["Completed", "Completed"]
    best = tuning["Properties"]["BestTrainingJob"]
    scores = [trial["ObjectiveValue"] for trial in trials]
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == max(scores)
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["MetricName"] == "valid:accuracy"
    tuned = best["TunedHyperParameters"]
    assert tuned["batch_size"] in ('"4"', '"6"')  # categorical: JSON-quoted, as SageMaker
    assert 0.001 <= float(tuned["learning_rate"]) <= 0.1
    assert 5 <= int(tuned["epochs"]) <= 20
    trained = steps["TrainModel"]["Properties"]["HyperParameters"]
    assert trained["learning_rate"] == tuned["learning_rate"]
    assert trained["batch_size"] == tuned["batch_size"]
    assert trained["epochs"] == "1"  # --max-epochs
    assert steps["TrainModel"]["LocalOverrides"] == {"epochs": [tuned["epochs"], "1"]}
    log = Path(steps["TrainModel"]["LogPath"]).read_text()
    command = log.splitlines()[0]
    assert f"--learning_rate {tuned['learning_rate']}" in command
    assert f"--batch_size {json.loads(tuned['batch_size'])}" in command
    assert "--image_size 32" in command
    assert [line for line in log.splitlines() if line.startswith("METRICS")][-1].startswith(
        "METRICS epoch=1 "
    )


def test_training_runs_the_debugger_rules_and_the_profiler_report(pipeline):
    steps = steps_by_name(pipeline.record("deployed"))
    training = steps["TrainModel"]
    configured = step_of(json.loads(pipeline.definition_path.read_text()), "TrainModel")
    names = [
        rule["RuleConfigurationName"] for rule in configured["Arguments"]["DebugRuleConfigurations"]
    ]
    evaluations = training["RuleEvaluations"]
    assert [e["RuleConfigurationName"] for e in evaluations] == names
    for evaluation in evaluations:
        # Error would mean no tensors reached the rule (hook config, paths, smdebug).
        assert evaluation["RuleEvaluationStatus"] in ("NoIssuesFound", "IssuesFound"), evaluation
    statuses = training["Properties"]["DebugRuleEvaluationStatuses"]
    assert [s["RuleConfigurationName"] for s in statuses] == names
    assert isinstance(training["ProfilerReport"], dict)
    job = training["Properties"]["TrainingJobName"]
    arguments = configured["Arguments"]
    profiler_uri = arguments["ProfilerConfig"]["S3OutputPath"]
    report = f"{profiler_uri}/{job}/rule-output/ProfilerReport/profiler-output/profiler-report.json"
    assert pipeline.object(report).is_file()
    tensors = pipeline.object(f"{arguments['DebugHookConfig']['S3OutputPath']}/{job}/debug-output")
    assert any(tensors.rglob("*.tfevents"))


def test_below_the_threshold_the_fail_step_ends_the_run_with_accuracy_and_threshold(pipeline):
    result = pipeline.runs["below threshold"]
    assert result.returncode == 1
    record = pipeline.record("below threshold")
    assert record["Status"] == "Failed"
    steps = steps_by_name(record)
    evaluation_uri = steps["EvaluateModel"]["Properties"]["ProcessingOutputConfig"]["Outputs"][0]
    evaluation = json.loads(
        (pipeline.object(evaluation_uri["S3Output"]["S3Uri"]) / "evaluation.json").read_text()
    )
    accuracy = evaluation["multiclass_classification_metrics"]["accuracy"]["value"]
    expected = f"Test accuracy {accuracy} is below AccuracyThreshold 1.0"
    assert steps["AccuracyBelowThreshold"]["Status"] == "Failed"
    assert expected in steps["AccuracyBelowThreshold"]["FailureReason"]
    assert expected in record["FailureReason"]
    assert "AccuracyBelowThreshold" in result.stderr and expected in result.stderr
    for name in ("RegisterModel-RegisterModel", "CreateModel-CreateModel", "DeployEndpoint"):
        assert steps[name]["Status"] == "Skipped"
    assert len(registry.versions(pipeline.store / "registry", GROUP)) == 1


def test_a_second_run_reuses_the_cached_steps(pipeline):
    first = steps_by_name(pipeline.record("deployed"))
    second = steps_by_name(pipeline.record("below threshold"))
    record = pipeline.record("json path typo")
    third = steps_by_name(record)
    for name in ("PrepareData", "TuneHyperparameters", "TrainModel"):
        assert second[name]["Status"] == "Cached", name
        assert second[name]["Properties"] == first[name]["Properties"]
        source = second[name]["CacheHitResult"]["SourcePipelineExecutionArn"]
        assert source == pipeline.record("deployed")["PipelineExecutionArn"]
    assert second["TuneHyperparameters"]["Trials"] == first["TuneHyperparameters"]["Trials"]
    # EvaluateModel also scores what the endpoint serves: nothing before the first run
    # deployed this model, this model itself after, so its arguments changed once; the run
    # after that takes it from the cache, as SageMaker's step cache would.
    assert second["EvaluateModel"]["Status"] == "Succeeded"
    assert third["EvaluateModel"]["Status"] == "Cached"
    source = third["EvaluateModel"]["CacheHitResult"]["SourcePipelineExecutionArn"]
    assert source == pipeline.record("below threshold")["PipelineExecutionArn"]
    # Only CompareWithDeployed, which is never cached, ran a job.
    jobs = pipeline.store / "executions" / record["PipelineExecutionId"] / "jobs"
    assert [job.name.split("-")[0] for job in jobs.iterdir()] == ["CompareWithDeployed"]


def test_pending_approval_registers_only_approve_deploys_and_the_same_model_is_skipped(
    pipeline, tmp_path
):
    """A copy of the shared store: the deployed model, then a retrained one awaiting approval."""
    import shutil

    store = tmp_path / "store"
    shutil.copytree(pipeline.store, store)
    served = json.loads((store / "endpoints" / f"{ENDPOINT}.json").read_text())["ModelDataUrl"]
    runs = Pipeline(tmp_path, json.loads(pipeline.definition_path.read_text()))
    runs.store = store

    # Unchanged data, every job step cached: the endpoint already serves this model.
    result = runs.run("unchanged", "--param", "AccuracyThreshold=0")
    assert result.returncode == 0, result.stderr
    steps = steps_by_name(runs.record("unchanged"))
    assert steps["TrainModel"]["Status"] == "Cached"
    assert steps["CompareWithDeployed"]["Status"] == "Succeeded"  # never cached
    assert steps["CheckModelChanged"]["Properties"] == {"Outcome": False}
    for name in ("RegisterModel-RegisterModel", "CheckApproval", "DeployEndpoint"):
        assert steps[name]["Status"] == "Skipped", name
    assert (
        f"endpoint {ENDPOINT} already serves {served}"
        in result.stderr + Path(steps["CompareWithDeployed"]["LogPath"]).read_text()
    )
    assert len(registry.versions(store / "registry", GROUP)) == 1

    # A retrained model (two epochs: a new TrainModel) registered for a person to approve,
    # whichever of the two scores better on this tiny test split (tests/e2e/test_champion.py
    # holds the gate's own runs).
    result = runs.run(
        "pending",
        "--param",
        "AccuracyThreshold=0",
        "--param",
        "ChampionMetric=none",
        "--param",
        "ModelApprovalStatus=PendingManualApproval",
        "--max-epochs",
        "2",
    )
    assert result.returncode == 0, result.stderr
    steps = steps_by_name(runs.record("pending"))
    retrained = steps["TrainModel"]["Properties"]["ModelArtifacts"]["S3ModelArtifacts"]
    assert retrained != served
    assert steps["RegisterModel-RegisterModel"]["Status"] == "Succeeded"
    assert steps["CheckApproval"]["Properties"] == {"Outcome": False}
    for name in ("CreateModel-CreateModel", "DeployEndpoint"):
        assert steps[name]["Status"] == "Skipped", name
    versions = registry.versions(store / "registry", GROUP)
    assert [v["ModelApprovalStatus"] for v in versions] == ["Approved", "PendingManualApproval"]
    endpoint = json.loads((store / "endpoints" / f"{ENDPOINT}.json").read_text())
    assert endpoint["ModelDataUrl"] == served

    approve = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "approve", "--store", str(store)]
        + ["--model-version", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert approve.returncode == 0, approve.stderr
    endpoint = json.loads((store / "endpoints" / f"{ENDPOINT}.json").read_text())
    assert endpoint["ModelDataUrl"] == retrained
    assert endpoint["ModelPackageArn"] == versions[1]["ModelPackageArn"]
    assert registry.version(store / "registry", GROUP, 2)["ModelApprovalStatus"] == "Approved"


def test_a_json_get_path_that_is_not_in_the_file_fails_naming_the_step_and_path(pipeline):
    result = pipeline.runs["json path typo"]
    assert result.returncode == 1
    steps = steps_by_name(pipeline.record("json path typo"))
    reason = steps["CheckAccuracy"]["FailureReason"]
    assert steps["CheckAccuracy"]["Status"] == "Failed"
    assert "multiclass_classification_metrics.acuracy.value" in reason
    assert "EvaluateModel.EvaluationReport" in reason
    assert "step CheckAccuracy failed" in result.stderr


def test_every_step_reference_of_the_definition_is_a_path_of_the_real_runs_properties(
    pipeline, exported
):
    steps = steps_by_name(pipeline.record("deployed"))
    checked = set()
    for entry in iter_steps(quick(exported)):
        for text in references(own_expressions(entry.step)):
            ref = ex.parse_reference(text)
            # PropertyFiles name a file for Std:JsonGet, not a property of the job.
            if ref.root != "Steps" or ref.path[:1] == ("PropertyFiles",):
                continue
            target = steps[ref.name]
            assert target["Status"] == "Succeeded", (ref.text, target["Status"])
            ex.check_path(target["Properties"], ref.path, ref.name)
            checked.add(ref.name)
    # The references that matter most: the model, the tuned values, the evaluation's outputs.
    assert {"TuneHyperparameters", "TrainModel", "EvaluateModel"} <= checked, checked


# ------------------------------------------------------------- up-front checks (CLI)


def run_definition(tmp_path: Path, definition: dict, *args: str) -> int:
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(definition))
    return main(["run-local", "--definition", str(path), "--store", str(tmp_path / "s"), *args])


def test_a_broken_property_reference_fails_before_anything_runs_naming_step_and_path(
    tmp_path, capsys, exported
):
    definition = copy.deepcopy(exported)
    model_input = step_of(definition, "EvaluateModel")["Arguments"]["ProcessingInputs"][1]
    model_input["S3Input"]["S3Uri"] = {"Get": "Steps.TrainModel.ModelArtifacts.S3ModelArtifact"}
    assert run_definition(tmp_path, definition) == 2
    error = capsys.readouterr().err
    assert "step EvaluateModel" in error
    assert "Steps.TrainModel.ModelArtifacts.S3ModelArtifact" in error
    assert "S3ModelArtifacts" in error
    assert not (tmp_path / "s").exists()


def test_a_reference_to_an_output_the_step_does_not_declare_is_caught_up_front(
    tmp_path, capsys, exported
):
    definition = copy.deepcopy(exported)
    channel = step_of(definition, "TrainModel")["Arguments"]["InputDataConfig"][1]
    uri = "Steps.PrepareData.ProcessingOutputConfig.Outputs['validation'].S3Output.S3Uri"
    channel["DataSource"]["S3DataSource"]["S3Uri"] = {"Get": uri}
    assert run_definition(tmp_path, definition) == 2
    error = capsys.readouterr().err
    assert "step TrainModel" in error and "'validation'" in error and "valid" in error


def test_an_unsupported_step_type_is_refused_by_name(tmp_path, capsys, exported):
    definition = copy.deepcopy(exported)
    check = step_of(definition, "CheckAccuracy")
    check["Arguments"]["IfSteps"].append(
        {"Name": "BatchScore", "Type": "Transform", "Arguments": {}}
    )
    assert run_definition(tmp_path, definition) == 2
    error = capsys.readouterr().err
    assert "step BatchScore: step type 'Transform' is not supported" in error


def test_an_unsupported_function_is_refused_by_name(tmp_path, capsys, exported):
    definition = copy.deepcopy(exported)
    arguments = step_of(definition, "PrepareData")["Arguments"]
    arguments["Environment"] = {"RUN": {"Std:Concat": {"Values": ["a", "b"]}}}
    assert run_definition(tmp_path, definition) == 2
    assert "Std:Concat is not supported" in capsys.readouterr().err


def test_an_unknown_or_mistyped_parameter_is_refused(tmp_path, capsys, exported):
    assert run_definition(tmp_path, exported, "--param", "ImageSiz=32") == 2
    assert "did you mean ImageSize" in capsys.readouterr().err
    assert run_definition(tmp_path, exported, "--param", "ImageSize=big") == 2
    assert "ImageSize expects an Integer" in capsys.readouterr().err


def test_a_run_without_input_data_says_how_to_give_it(tmp_path, capsys, exported):
    assert run_definition(tmp_path, exported) == 2
    error = capsys.readouterr().err
    assert "no input data at s3://" in error and "--input" in error


def test_a_definition_from_other_scripts_is_not_run_with_these(tmp_path, capsys, exported):
    text = json.dumps(exported)
    digests = set(re.findall(r"/code/([0-9a-f]{16})/", text))
    assert len(digests) == 1
    stale = json.loads(text.replace(f"/code/{digests.pop()}/", "/code/0123456789abcdef/"))
    assert run_definition(tmp_path, stale) == 2
    assert "code bundle 0123456789abcdef" in capsys.readouterr().err


def test_a_dependency_cycle_is_refused():
    definition = {
        "Parameters": [],
        "Steps": [
            {"Name": "A", "Type": "Fail", "DependsOn": ["B"], "Arguments": {}},
            {"Name": "B", "Type": "Fail", "DependsOn": ["A"], "Arguments": {}},
        ],
    }
    with pytest.raises(DefinitionError, match="cycle: A -> B -> A"):
        check_definition(definition)


def test_a_longer_cycle_is_named_each_step_before_the_one_that_waits_for_it():
    definition = {
        "Parameters": [],
        "Steps": [
            {"Name": "Start", "Type": "Fail", "Arguments": {}},
            {"Name": "A", "Type": "Fail", "DependsOn": ["Start", "C"], "Arguments": {}},
            {"Name": "B", "Type": "Fail", "DependsOn": ["A"], "Arguments": {}},
            {"Name": "C", "Type": "Fail", "DependsOn": ["B"], "Arguments": {}},
        ],
    }
    with pytest.raises(DefinitionError) as raised:
        check_definition(definition)
    assert str(raised.value) == (
        "steps depend on each other in a cycle: A -> B -> C -> A (each waits for the one before it)"
    )


# ----------------------------------------------- branches, registry and endpoints


def deploy_definition() -> dict:
    """Score >= Threshold: register, create the model; else fail."""
    model_url = {"Get": "Parameters.ModelUrl"}
    environment = {"SAGEMAKER_PROGRAM": "inference.py"}
    return {
        "Version": "2020-12-01",
        "Parameters": [
            {"Name": "Score", "Type": "Float", "DefaultValue": 0.5},
            {"Name": "Threshold", "Type": "Float", "DefaultValue": 0.7},
            {"Name": "EndpointName", "Type": "String", "DefaultValue": "demo"},
            {"Name": "ModelUrl", "Type": "String", "DefaultValue": "s3://bucket/m/model.tar.gz"},
        ],
        "Steps": [
            {
                "Name": "Check",
                "Type": "Condition",
                "Arguments": {
                    "Conditions": [
                        {
                            "Type": "GreaterThanOrEqualTo",
                            "LeftValue": {"Get": "Parameters.Score"},
                            "RightValue": {"Get": "Parameters.Threshold"},
                        }
                    ],
                    "IfSteps": [
                        {
                            "Name": "Register",
                            "Type": "RegisterModel",
                            "Arguments": {
                                "ModelPackageGroupName": "demo-group",
                                "ModelApprovalStatus": "PendingManualApproval",
                                "InferenceSpecification": {
                                    "Containers": [{"Image": "img", "ModelDataUrl": model_url}]
                                },
                                "ModelMetrics": {
                                    "ModelQuality": {
                                        "Statistics": {
                                            "ContentType": "application/json",
                                            "S3Uri": "s3://bucket/m/evaluation.json",
                                        }
                                    }
                                },
                            },
                        },
                        {
                            "Name": "Model",
                            "Type": "Model",
                            "DependsOn": ["Register"],
                            "Arguments": {
                                "PrimaryContainer": {
                                    "Image": "img",
                                    "ModelDataUrl": model_url,
                                    "Environment": environment,
                                }
                            },
                        },
                    ],
                    "ElseSteps": [
                        {
                            "Name": "TooLow",
                            "Type": "Fail",
                            "Arguments": {
                                "ErrorMessage": {
                                    "Std:Join": {
                                        "On": " ",
                                        "Values": [
                                            "Score",
                                            {"Get": "Parameters.Score"},
                                            "is below",
                                            {"Get": "Parameters.Threshold"},
                                        ],
                                    }
                                }
                            },
                        }
                    ],
                },
            }
        ],
    }


@pytest.fixture
def model_store(tmp_path) -> Path:
    store = Store(tmp_path / "store")
    store.put_bytes("s3://bucket/m/model.tar.gz", b"not really a model")
    store.put_bytes("s3://bucket/m/evaluation.json", b'{"accuracy": 0.9}')
    return store.root


def test_a_false_condition_runs_the_fail_step_and_skips_the_other_branch(model_store):
    outcome = run(deploy_definition(), Options(store=model_store))
    assert not outcome.succeeded
    assert outcome.record["FailureReason"] == "step TooLow failed: Score 0.5 is below 0.7"
    for name in ("Register", "Model"):
        assert outcome.step(name)["Status"] == "Skipped"
    assert outcome.step("Check")["Properties"] == {"Outcome": False}
    assert not (model_store / "registry").exists()
    assert not (model_store / "endpoints").exists()


def test_the_fail_step_message_is_the_cli_error_and_the_exit_code_is_1(
    tmp_path, model_store, capsys
):
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(deploy_definition()))
    code = main(["run-local", "--definition", str(path), "--store", str(model_store)])
    assert code == 1
    assert "Score 0.5 is below 0.7" in capsys.readouterr().err


def test_a_true_condition_registers_and_creates_the_model_in_order(model_store):
    options = Options(store=model_store, parameters=[("Score", "0.9")])
    first = run(deploy_definition(), options)
    assert first.succeeded, first.record["FailureReason"]
    assert first.step("TooLow")["Status"] == "Skipped"
    names = [step["StepName"] for step in first.record["Steps"]]
    assert names.index("Register") < names.index("Model")  # DependsOn
    second = run(deploy_definition(), options)
    assert second.succeeded

    versions = registry.versions(model_store / "registry", "demo-group")
    assert [v["ModelPackageVersion"] for v in versions] == [1, 2]
    assert versions[0]["ModelMetrics"] == {"accuracy": 0.9}
    assert versions[1]["ModelApprovalStatus"] == "PendingManualApproval"
    model = second.step("Model")["Properties"]
    assert (
        model["ModelName"] == f"Model-{second.record['PipelineExecutionId'].removeprefix('local-')}"
    )
    stored = json.loads((model_store / "models" / f"{model['ModelName']}.json").read_text())
    assert stored["PrimaryContainer"]["Environment"] == {"SAGEMAKER_PROGRAM": "inference.py"}


# ------------------------------------------------------------------ tuning and cache


def condition(name: str, *depends_on: str, **branches: list) -> dict:
    """A condition step that holds (1 == 1) unless `Conditions` says otherwise."""
    arguments = {"Conditions": [{"Type": "Equals", "LeftValue": 1, "RightValue": 1}], **branches}
    return {
        "Name": name,
        "Type": "Condition",
        "DependsOn": list(depends_on),
        "Arguments": arguments,
    }


def test_the_branch_not_taken_and_what_waits_for_it_are_skipped_in_wave_order(tmp_path):
    gate = condition(
        "Gate",
        IfSteps=[condition("Big"), condition("After", "Big")],
        ElseSteps=[condition("Small")],
    )
    gate["Arguments"]["Conditions"][0]["RightValue"] = 2  # false: the Else branch runs
    definition = {
        "Version": "2020-12-01",
        "Parameters": [],
        # Listed before the steps they wait for: the order comes from the DAG.
        "Steps": [condition("Tail", "After"), condition("Also", "Small"), gate],
    }
    outcome = run(definition, Options(store=tmp_path / "store"))
    assert outcome.succeeded, outcome.record["FailureReason"]
    steps = [(step["StepName"], step["Status"]) for step in outcome.record["Steps"]]
    assert steps == [
        ("Gate", "Succeeded"),
        ("Big", "Skipped"),
        ("After", "Skipped"),
        ("Tail", "Skipped"),  # it waits for a skipped step
        ("Small", "Succeeded"),
        ("Also", "Succeeded"),
    ]


def test_sampling_respects_every_range_kind_and_scaling():
    ranges = {
        "ContinuousParameterRanges": [
            {"Name": "lr", "MinValue": "0.001", "MaxValue": "0.1", "ScalingType": "Auto"},
            {"Name": "lin", "MinValue": "0.2", "MaxValue": "0.3", "ScalingType": "Linear"},
            {
                "Name": "rev",
                "MinValue": "0.9",
                "MaxValue": "0.999",
                "ScalingType": "ReverseLogarithmic",
            },
        ],
        "IntegerParameterRanges": [
            {"Name": "epochs", "MinValue": "5", "MaxValue": "7", "ScalingType": "Auto"},
            {"Name": "units", "MinValue": "16", "MaxValue": "1024", "ScalingType": "Logarithmic"},
        ],
        "CategoricalParameterRanges": [{"Name": "batch_size", "Values": ['"32"', '"64"']}],
    }
    rng = random.Random(0)
    points = [sample(ranges, rng) for _ in range(300)]
    learning_rates = [float(p["lr"]) for p in points]
    assert all(0.001 <= value <= 0.1 for value in learning_rates)
    # Auto over two decades is log-uniform: about half the draws fall below 0.01.
    assert 0.35 < sum(value < 0.01 for value in learning_rates) / len(points) < 0.65
    assert all(0.2 <= float(p["lin"]) <= 0.3 for p in points)
    assert all(0.9 <= float(p["rev"]) <= 0.999 for p in points)
    assert {p["epochs"] for p in points} == {"5", "6", "7"}
    assert all(16 <= int(p["units"]) <= 1024 for p in points)
    assert {p["batch_size"] for p in points} == {'"32"', '"64"'}


def test_the_same_seed_samples_the_same_trials():
    ranges = {"ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0.001", "MaxValue": "0.1"}]}
    draw = [sample(ranges, random.Random("0:Tune")) for _ in range(3)]
    again = [sample(ranges, random.Random("0:Tune")) for _ in range(3)]
    other = [sample(ranges, random.Random("1:Tune")) for _ in range(3)]
    assert draw == again != other


def test_max_epochs_clamps_and_keeps_the_encoding():
    assert clamp_epochs({"epochs": "12", "lr": "0.1"}, 2) == (
        {"epochs": "2", "lr": "0.1"},
        {"epochs": ["12", "2"]},
    )
    assert clamp_epochs({"epochs": '"12"'}, 3) == ({"epochs": '"3"'}, {"epochs": ['"12"', '"3"']})
    assert clamp_epochs({"epochs": "1"}, 3) == ({"epochs": "1"}, {})
    assert clamp_epochs({"epochs": "12"}, None) == ({"epochs": "12"}, {})


def test_expire_after_durations():
    assert parse_duration("P30D").days == 30
    assert parse_duration("PT1H").total_seconds() == 3600
    assert parse_duration("30dT5h").total_seconds() == 30 * 86400 + 5 * 3600
    assert parse_duration("T16m").total_seconds() == 16 * 60
    assert parse_duration("") is None
    assert parse_duration("soon") is None


def test_the_cache_key_follows_input_content_not_just_its_uri(tmp_path):
    store = Store(tmp_path)
    store.put_bytes("s3://b/in/a.jpg", b"one")
    definition = {
        "Parameters": [],
        "Steps": [
            {
                "Name": "Prep",
                "Type": "Processing",
                "CacheConfig": {"Enabled": True, "ExpireAfter": "P30D"},
                "Arguments": {
                    "AppSpecification": {"ContainerEntrypoint": ["python3", "x.py"]},
                    "ProcessingInputs": [
                        {"InputName": "data", "S3Input": {"S3Uri": "s3://b/in", "LocalPath": "/x"}}
                    ],
                },
            }
        ],
    }
    node = check_definition(definition)["Prep"]
    arguments = node.arguments
    cache = StepCache(store, "p", True, {})
    key = cache.key(node, arguments)
    assert key == cache.key(node, arguments)
    store.put_bytes("s3://b/in/a.jpg", b"two")
    assert cache.key(node, arguments) != key
    # Outside the key's attributes, an output URI per execution does not change it.
    assert cache.key(node, {**arguments, "ProcessingOutputConfig": {"x": 1}}) == cache.key(
        node, arguments
    )
    assert StepCache(store, "p", False, {}).key(node, arguments) is None
    disabled = copy.deepcopy(definition)
    disabled["Steps"][0]["CacheConfig"]["Enabled"] = False
    assert cache.key(check_definition(disabled)["Prep"], arguments) is None


def tuning_arguments(objective_type: str = "Maximize") -> dict:
    return {
        "HyperParameterTuningJobConfig": {
            "HyperParameterTuningJobObjective": {
                "MetricName": "valid:accuracy",
                "Type": objective_type,
            },
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {
                        "Name": "learning_rate",
                        "MinValue": "0.001",
                        "MaxValue": "0.1",
                        "ScalingType": "Auto",
                    }
                ],
                "IntegerParameterRanges": [
                    {"Name": "epochs", "MinValue": "5", "MaxValue": "20", "ScalingType": "Auto"}
                ],
            },
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 2},
            "Strategy": "Bayesian",
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": {"model_name": '"densenet161"'},
            "OutputDataConfig": {"S3OutputPath": "s3://b/tuning"},
        },
    }


def fake_trials(scores: dict[int, float | None]):
    """run_trial for run_tuning: trial n scores scores[n]; None fails the job."""
    seen = []

    def run_trial(number: int, name: str, arguments: dict) -> TrainingResult:
        seen.append((number, name, arguments["HyperParameters"]))
        if scores[number] is None:
            raise JobFailed(f"AlgorithmError: trial {number} crashed")
        metrics = [{"MetricName": "valid:accuracy", "Value": scores[number]}]
        return TrainingResult({"FinalMetricDataList": metrics}, Path("trial.log"))

    return run_trial, seen


def test_tuning_runs_max_trials_keeps_going_past_failures_and_ranks_the_rest():
    run_trial, seen = fake_trials({1: 0.5, 2: None, 3: 0.9, 4: 0.9})
    tuning = TuningRun(
        "Tune", "Tune-x", seed=0, max_trials=4, max_epochs=2, workers=1, run_trial=run_trial
    )
    properties, trials = run_tuning(tuning, tuning_arguments())
    assert [number for number, _, _ in seen] == [1, 2, 3, 4]  # --max-trials over 8 declared
    best = properties["BestTrainingJob"]
    assert best["TrainingJobName"] == "Tune-x-003"  # ties go to the earlier trial
    assert best["TunedHyperParameters"] == trials[2].tuned
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == 0.9
    summaries = [s["TrainingJobName"] for s in properties["TrainingJobSummaries"]]
    assert summaries == ["Tune-x-003", "Tune-x-004", "Tune-x-001", "Tune-x-002"]
    assert properties["TrainingJobStatusCounters"]["NonRetryableError"] == 1
    assert trials[1].status == "Failed" and "trial 2 crashed" in trials[1].failure
    # Every trial got the static hyperparameters and its epochs clamped by --max-epochs.
    for _, _, hyperparameters in seen:
        assert hyperparameters["model_name"] == '"densenet161"'
        assert hyperparameters["epochs"] == "2"
    assert all(int(trial.tuned["epochs"]) >= 5 for trial in trials)  # recorded as sampled


def test_tuning_minimises_when_asked_and_fails_when_no_trial_scores():
    run_trial, _ = fake_trials({1: 0.5, 2: 0.2})
    tuning = TuningRun(
        "Tune", "T", seed=0, max_trials=2, max_epochs=None, workers=2, run_trial=run_trial
    )
    properties, _ = run_tuning(tuning, tuning_arguments("Minimize"))
    assert properties["BestTrainingJob"]["TrainingJobName"] == "T-002"
    run_trial, _ = fake_trials({1: None, 2: None})
    tuning = TuningRun(
        "Tune", "T", seed=0, max_trials=2, max_epochs=None, workers=1, run_trial=run_trial
    )
    with pytest.raises(
        TuningError, match="no training job reported valid:accuracy.*trial 1 crashed"
    ):
        run_tuning(tuning, tuning_arguments())


# ------------------------------------------------- a processing job in seconds

# A container entrypoint that needs no code bundle: `python3 -c` with the job's arguments.
ECHO_SCRIPT = """
import json, os, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
if args["--greeting"] == "fail":
    print("boom: the greeting was fail", file=sys.stderr)
    sys.exit(3)
text = open(os.path.join("/opt/ml/processing/input", "a.txt")).read()
print("METRICS lines=1")
os.makedirs(os.path.join(args["--out"], "nested"), exist_ok=True)
with open(os.path.join(args["--out"], "nested", "result.json"), "w") as out:
    json.dump({"greeting": args["--greeting"], "input": text, "out": args["--out"],
               "job": os.environ["PROCESSING_JOB_NAME"], "color": os.environ["COLOR"],
               "inherited": sorted(k for k in os.environ
                                   if k.startswith(("SM_CHANNEL", "SAGEMAKER_P")))}, out)
"""


def echo_definition() -> dict:
    output_uri = {
        "Std:Join": {"On": "/", "Values": ["s3://b/out", {"Get": "Execution.PipelineExecutionId"}]}
    }
    return {
        "Parameters": [{"Name": "Greeting", "Type": "String", "DefaultValue": "hello"}],
        "Steps": [
            {
                "Name": "Echo",
                "Type": "Processing",
                "CacheConfig": {"Enabled": True, "ExpireAfter": "P1D"},
                "Arguments": {
                    "AppSpecification": {
                        "ContainerEntrypoint": ["python3", "-c", ECHO_SCRIPT],
                        "ContainerArguments": [
                            "--greeting",
                            {"Get": "Parameters.Greeting"},
                            "--out",
                            "/opt/ml/processing/output",
                        ],
                    },
                    "Environment": {"COLOR": "blue"},
                    "ProcessingInputs": [
                        {
                            "InputName": "data",
                            "S3Input": {
                                "S3Uri": "s3://b/in",
                                "LocalPath": "/opt/ml/processing/input",
                                "S3DataType": "S3Prefix",
                                "S3InputMode": "File",
                            },
                        }
                    ],
                    "ProcessingOutputConfig": {
                        "Outputs": [
                            {
                                "OutputName": "out",
                                "S3Output": {
                                    "S3Uri": output_uri,
                                    "LocalPath": "/opt/ml/processing/output",
                                    "S3UploadMode": "EndOfJob",
                                },
                            }
                        ]
                    },
                },
            }
        ],
    }


@pytest.fixture
def echo_store(tmp_path) -> Path:
    store = Store(tmp_path / "store")
    store.put_bytes("s3://b/in/a.txt", b"first")
    return store.root


def echo(store: Path, *args: str) -> tuple[int, dict | None]:
    definition = store.parent / "echo.json"
    definition.write_text(json.dumps(echo_definition()))
    code = main(["run-local", "--definition", str(definition), "--store", str(store), *args])
    records = sorted((store / "executions").glob("*/record.json"), key=lambda p: p.stat().st_mtime)
    return code, json.loads(records[-1].read_text()) if records else None


def test_a_processing_job_runs_under_the_container_contract_in_its_job_root(
    echo_store, capsys, monkeypatch
):
    # The container contract's variables of the runner's own environment stay out of the job,
    # as on SageMaker (a stray SAGEMAKER_PROGRAM made AWS's toolkit start another script).
    monkeypatch.setenv("SAGEMAKER_PROGRAM", "inference.py")
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/somewhere/else")
    code, record = echo(echo_store, "--param", "Greeting=hi")
    assert code == 0
    (step,) = record["Steps"]
    output = step["Properties"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert output == f"s3://b/out/{record['PipelineExecutionId']}"
    result = json.loads((Store(echo_store).path(output) / "nested" / "result.json").read_text())
    job_root = (
        echo_store.absolute()
        / "executions"
        / record["PipelineExecutionId"]
        / "jobs"
        / result["job"]
    )
    assert result == {
        "greeting": "hi",
        "input": "first",
        "out": str(job_root / "opt" / "ml" / "processing" / "output"),
        "job": step["Properties"]["ProcessingJobName"],
        "color": "blue",
        "inherited": [],
    }
    assert not (job_root / "opt" / "ml" / "processing" / "input").exists()  # inputs discarded
    assert "[Echo] lines=1" in capsys.readouterr().err


def test_a_second_run_is_cached_unless_no_cache_or_new_input_content(echo_store):
    _, first = echo(echo_store)
    _, second = echo(echo_store)
    assert second["Steps"][0]["Status"] == "Cached"
    assert second["Steps"][0]["Properties"] == first["Steps"][0]["Properties"]
    _, forced = echo(echo_store, "--no-cache")
    assert forced["Steps"][0]["Status"] == "Succeeded"
    assert forced["LocalOverrides"]["Cache"] is False
    Store(echo_store).put_bytes("s3://b/in/a.txt", b"second")
    _, changed = echo(echo_store)
    assert changed["Steps"][0]["Status"] == "Succeeded"
    _, again = echo(echo_store)
    source = again["Steps"][0]["CacheHitResult"]["SourcePipelineExecutionArn"]
    assert source == changed["PipelineExecutionArn"]


def test_a_failing_job_fails_the_run_with_its_exit_code_and_last_line(echo_store, capsys):
    code, record = echo(echo_store, "--param", "Greeting=fail")
    assert code == 1
    reason = record["Steps"][0]["FailureReason"]
    assert reason.startswith("AlgorithmError: python3 exited with code 3: ")
    assert "exited with code 3: boom: the greeting was fail" in reason
    assert Path(record["Steps"][0]["LogPath"]).is_file()
    assert "boom: the greeting was fail" in capsys.readouterr().err
    assert not (echo_store / "cache" / "Echo").exists()  # failures are never cached


def test_a_job_past_its_max_runtime_is_stopped_and_fails(tmp_path):
    definition = echo_definition()
    arguments = definition["Steps"][0]["Arguments"]
    arguments["AppSpecification"] = {
        "ContainerEntrypoint": ["python3", "-c", "import time; time.sleep(600)"]
    }
    arguments["StoppingCondition"] = {"MaxRuntimeInSeconds": 1}
    store = Store(tmp_path / "store")
    store.put_bytes("s3://b/in/a.txt", b"x")
    outcome = run(definition, Options(store=store.root))
    assert not outcome.succeeded
    assert outcome.step("Echo")["FailureReason"].startswith("MaxRuntimeExceeded")
    # Stopped, not run to its end: far less than the job's 600 s, however loaded the machine.
    assert outcome.step("Echo")["Seconds"] < 300


def test_sigterm_stops_the_run_and_its_jobs_and_records_it_stopped(tmp_path):
    import signal
    import time

    definition = echo_definition()
    marker = tmp_path / "job-pid"
    definition["Steps"][0]["Arguments"]["AppSpecification"] = {
        "ContainerEntrypoint": [
            "python3",
            "-c",
            f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(600)",
        ]
    }
    store = Store(tmp_path / "store")
    store.put_bytes("s3://b/in/a.txt", b"x")
    (tmp_path / "definition.json").write_text(json.dumps(definition))
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run-local", "--store", str(store.root),
         "--definition", str(tmp_path / "definition.json")],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.2)
    job_pid = int(marker.read_text())
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    with pytest.raises(ProcessLookupError):
        os.kill(job_pid, 0)
    (record_path,) = (store.root / "executions").glob("*/record.json")
    record = json.loads(record_path.read_text())
    assert record["Status"] == "Stopped"


# A training script that writes both epoch checkpoints, then exits with --status.
CHECKPOINTING_SCRIPT = """\
import argparse, pathlib, sys
parser = argparse.ArgumentParser()
parser.add_argument("--status", type=int)
parser.add_argument("--checkpoint-dir")
args = parser.parse_args()
folder = pathlib.Path(args.checkpoint_dir)
(folder / "checkpoint.pt").write_bytes(b"latest")
(folder / "checkpoint.previous.pt").write_bytes(b"previous")
sys.exit(args.status)
"""


def checkpointing_definition(status: int) -> dict:
    return {
        "Version": "2020-12-01",
        "Steps": [
            {
                "Name": "Fit",
                "Type": "Training",
                "Arguments": {
                    "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
                    "HyperParameters": {
                        "sagemaker_program": '"fit.py"',
                        "sagemaker_submit_directory": '"s3://b/code/sourcedir.tar.gz"',
                        "status": f'"{status}"',
                    },
                    "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
                    "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large"},
                    "StoppingCondition": {"MaxRuntimeInSeconds": 600},
                    "CheckpointConfig": {"S3Uri": "s3://b/checkpoints"},
                },
            }
        ],
    }


@pytest.mark.parametrize(
    ("status", "kept"), [(0, ["checkpoint.pt"]), (3, ["checkpoint.pt", "checkpoint.previous.pt"])]
)
def test_a_finished_training_job_keeps_only_its_latest_checkpoint(tmp_path, status, kept):
    store = Store(tmp_path / "store")
    source = tmp_path / "src"
    source.mkdir()
    (source / "fit.py").write_text(CHECKPOINTING_SCRIPT)
    tarball = tmp_path / "sourcedir.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(source / "fit.py", arcname="fit.py")
    store.put_file("s3://b/code/sourcedir.tar.gz", tarball)
    # A previous checkpoint left in the prefix by an earlier, interrupted attempt.
    store.put_bytes("s3://b/checkpoints/checkpoint.previous.pt", b"older")
    outcome = run(checkpointing_definition(status), Options(store=store.root))
    assert outcome.succeeded == (status == 0)
    (job,) = (store.root / "executions").glob("*/jobs/Fit-*")
    assert sorted(p.name for p in (job / "opt" / "ml" / "checkpoints").iterdir()) == sorted(kept)
    assert sorted(p.name for p in store.path("s3://b/checkpoints").iterdir()) == sorted(kept)
