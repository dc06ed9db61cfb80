"""The exported pipeline definition: its DAG, every setting the issue fixes, determinism."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.definitions import parameter_refs, step
from helpers.paths import ROOT

from pipeline.bundle import Bundle, entries_dir
from pipeline.config import PipelineConfig, alarm_names
from pipeline.definition import definition_dict, definition_json
from pipeline.definition_json import iter_steps, references
from pipeline.graph import mermaid
from pipeline.metrics import METRIC_DEFINITIONS, OBJECTIVE_METRIC

CLI = Path(sys.executable).parent / "dogbreed-pipeline"


@pytest.fixture(scope="module")
def definition() -> dict:
    return definition_dict(PipelineConfig())


def _export(seed: str, out: Path) -> subprocess.CompletedProcess:
    """Run the installed CLI with no credentials, an empty environment, and no network."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": seed, "HOME": str(out.parent)}
    command = [str(CLI), "export", "--out", str(out)]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"]).returncode == 0:
        command = ["unshare", "-n", *command]
    return subprocess.run(command, env=env, cwd=out.parent, capture_output=True, text=True)


@pytest.mark.slow
def test_export_is_byte_identical_across_hash_seeds_offline_and_without_credentials(tmp_path):
    outputs = []
    for seed in ("1", "4242"):
        out = tmp_path / f"definition-{seed}.json"
        result = _export(seed, out)
        assert result.returncode == 0, result.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0] == definition_json(PipelineConfig()).encode()


def test_committed_definition_matches_a_fresh_export():
    committed = (ROOT / "pipeline_definition.json").read_text()
    assert committed == definition_json(PipelineConfig()), (
        "pipeline_definition.json is stale: run `make export` and commit it"
    )


def test_definition_is_pretty_printed_with_sorted_keys():
    text = definition_json(PipelineConfig())
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_dag_runs_prepare_tune_train_evaluate_then_condition(definition):
    text = mermaid(definition)
    for edge in (
        "PrepareData --> TuneHyperparameters",
        "TuneHyperparameters --> TrainModel",
        "PrepareData --> TrainModel",
        "TrainModel --> CompareWithDeployed",
        "TrainModel --> EvaluateModel",
        "PrepareData --> EvaluateModel",
        "CompareWithDeployed --> EvaluateModel",
        "EvaluateModel --> CheckAccuracy",
        "CheckAccuracy -->|true| CheckModelChanged",
        "CheckModelChanged -->|true| CheckChampion",
        "CheckChampion -->|true| RegisterModel_RegisterModel",
        "CheckChampion -->|false| ChampionGateFailed",
        "RegisterModel_RegisterModel --> CheckApproval",
        "CheckApproval -->|true| CreateModel_CreateModel",
        "CreateModel_CreateModel --> DeployEndpoint",
        "CheckAccuracy -->|false| AccuracyBelowThreshold",
    ):
        assert edge in text
    top = [s["Name"] for s in definition["Steps"]]
    assert top == [
        "PrepareData",
        "TuneHyperparameters",
        "TrainModel",
        "CompareWithDeployed",
        "EvaluateModel",
        "CheckAccuracy",
    ]


def test_every_parameter_has_a_default_and_pascal_case_name(definition):
    for parameter in definition["Parameters"]:
        assert "DefaultValue" in parameter, parameter["Name"]
        assert parameter["Name"][0].isupper() and "_" not in parameter["Name"]
    names = {p["Name"] for p in definition["Parameters"]}
    assert {
        "InputDataUrl",
        "AccuracyThreshold",
        "ModelApprovalStatus",
        "EndpointName",
        "EndpointInstanceType",
        "TrainingInstanceCount",
        "MaxTuningJobs",
        "MaxParallelTuningJobs",
    } <= names


def test_every_step_has_a_display_name_and_description(definition):
    for s in (entry.step for entry in iter_steps(definition)):
        assert s.get("DisplayName"), s["Name"]
        assert s.get("Description"), s["Name"]


def test_prepare_data_reads_input_url_and_writes_splits_and_class_index(definition):
    args = step(definition, "PrepareData")["Arguments"]
    inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
    assert inputs["data"]["S3Uri"] == {"Get": "Parameters.InputDataUrl"}
    assert inputs["code"]["S3Uri"].endswith("/scripts/")
    outputs = {o["OutputName"] for o in args["ProcessingOutputConfig"]["Outputs"]}
    assert outputs == {"train", "valid", "test", "meta"}
    assert args["AppSpecification"]["ContainerEntrypoint"][-1].endswith("/preprocess.py")


def test_tuning_searches_the_published_ranges_on_validation_accuracy(definition):
    args = step(definition, "TuneHyperparameters")["Arguments"]
    config = args["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {
        "MetricName": OBJECTIVE_METRIC,
        "Type": "Maximize",
    }
    assert OBJECTIVE_METRIC == "valid:accuracy"
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [
        {"MaxValue": "0.1", "MinValue": "0.001", "Name": "learning_rate", "ScalingType": "Auto"}
    ]
    # Framework estimators JSON-encode values; the training toolkit decodes them again. The
    # published {32, 64, 128}: train.py splits what the device cannot hold (batching.py).
    assert ranges["CategoricalParameterRanges"] == [
        {"Name": "batch_size", "Values": ['"32"', '"64"', '"128"']}
    ]
    assert ranges["IntegerParameterRanges"] == [
        {"MaxValue": "20", "MinValue": "5", "Name": "epochs", "ScalingType": "Auto"}
    ]
    limits = config["ResourceLimits"]
    assert limits["MaxNumberOfTrainingJobs"] == {"Get": "Parameters.MaxTuningJobs"}
    assert limits["MaxParallelTrainingJobs"] == {"Get": "Parameters.MaxParallelTuningJobs"}
    job = args["TrainingJobDefinition"]
    assert job["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert job["StaticHyperParameters"]["model_name"] == '"densenet161"'
    channels = {c["ChannelName"]: c for c in job["InputDataConfig"]}
    assert set(channels) == {"train", "valid", "weights"}, "the test split never reaches tuning"
    weights = channels["weights"]["DataSource"]["S3DataSource"]["S3Uri"]
    assert weights == {"Get": "Parameters.PretrainedWeightsUrl"}


def test_the_weights_parameter_defaults_to_a_bundle_folder_without_weights(definition):
    """A channel can be neither empty nor absent at run time, so the default names the code
    bundle's no-weights folder, which upsert and run-local put beside the code."""
    from pipeline.bundle import Bundle
    from pipeline.config import PipelineConfig

    (declared,) = [p for p in definition["Parameters"] if p["Name"] == "PretrainedWeightsUrl"]
    bundle = Bundle.from_dir()
    assert declared["DefaultValue"] == bundle.no_weights_uri(PipelineConfig())
    prefix = bundle.key_prefix(PipelineConfig())
    assert f"{prefix}/no-weights/README.md" in bundle.objects(PipelineConfig())
    train = step(definition, "TrainModel")["Arguments"]["InputDataConfig"]
    assert [c["ChannelName"] for c in train] == ["train", "valid", "weights"]


def test_training_retrains_with_the_best_tuned_hyperparameters(definition):
    hyper = step(definition, "TrainModel")["Arguments"]["HyperParameters"]
    for name in ("learning_rate", "batch_size", "epochs"):
        expected = f"Steps.TuneHyperparameters.BestTrainingJob.TunedHyperParameters['{name}']"
        assert expected in set(references(hyper[name]))
    assert hyper["sagemaker_torch_distributed_enabled"] == "true"


def test_training_carries_debugger_rules_hook_and_profiler(definition):
    args = step(definition, "TrainModel")["Arguments"]
    rules = {r["RuleConfigurationName"] for r in args["DebugRuleConfigurations"]}
    assert rules == {"VanishingGradient", "Overfit", "Overtraining", "PoorWeightInitialization"}
    assert [r["RuleConfigurationName"] for r in args["ProfilerRuleConfigurations"]] == [
        "ProfilerReport"
    ]
    assert args["DebugHookConfig"]["HookParameters"] == {
        "train.save_interval": "100",
        "eval.save_interval": "10",
    }
    assert args["ProfilerConfig"]["ProfilingIntervalInMilliseconds"] == 500
    assert args["ResourceConfig"]["InstanceCount"] == {"Get": "Parameters.TrainingInstanceCount"}
    # Not per execution: a cached rerun must see the same arguments to be reused.
    checkpoint = args["CheckpointConfig"]["S3Uri"]
    assert "Steps.TuneHyperparameters.BestTrainingJob.TrainingJobName" in set(
        references(checkpoint)
    )
    assert "Execution.PipelineExecutionId" not in set(references(checkpoint))


# --------------------------------------------------------------------------- Debugger modes
# README, "SageMaker Debugger: three modes": service (the committed definition), pipeline, off.

DEBUGGER_KEYS = (
    "DebugHookConfig",
    "DebugRuleConfigurations",
    "ProfilerRuleConfigurations",
    "CollectionConfigurations",
    "RuleEvaluatorImage",
    "sagemaker-debugger-rules",
)
RELU_INPUTS = r".*(features\.relu0|denselayer1\.relu[12]|transition\d\.relu)_input_\d+"
RULES = ["VanishingGradient", "Overfit", "Overtraining", "PoorWeightInitialization"]


@pytest.fixture(scope="module")
def pipeline_mode() -> dict:
    return definition_dict(PipelineConfig(debugger="pipeline"))


@pytest.fixture(scope="module")
def off_mode() -> dict:
    return definition_dict(PipelineConfig(debugger="off"))


def _container_arguments(processing: dict) -> dict:
    arguments = processing["Arguments"]["AppSpecification"]["ContainerArguments"]
    return dict(zip(arguments[::2], arguments[1::2], strict=True))


def _without_code_hash(text: str) -> str:
    return re.sub(r"/code/[0-9a-f]{16}/", "/code/<hash>/", text)


@pytest.mark.parametrize("mode", ["pipeline", "off"])
def test_pipeline_and_off_modes_configure_no_debugger_on_any_job(mode, pipeline_mode, off_mode):
    definition = pipeline_mode if mode == "pipeline" else off_mode
    text = json.dumps(definition)
    for key in DEBUGGER_KEYS:
        assert key not in text, key
    for entry in iter_steps(definition):
        if entry.type == "Training":
            # What the SDK writes for disable_profiler=True: the profiler off, nothing else.
            assert entry.arguments["ProfilerConfig"] == {"DisableProfiler": True}
        if entry.type == "Tuning":
            assert "ProfilerConfig" not in entry.arguments["TrainingJobDefinition"]


def test_off_mode_saves_no_tensors_and_runs_no_rule_step(off_mode, definition):
    hyper = step(off_mode, "TrainModel")["Arguments"]["HyperParameters"]
    assert "debugger_hook" not in hyper
    names = {entry.name for entry in iter_steps(off_mode)}
    assert names == {entry.name for entry in iter_steps(definition)}
    assert "RuleIssuesBlockRegistration" not in {p["Name"] for p in off_mode["Parameters"]}


def test_pipeline_mode_hooks_train_model_only(pipeline_mode):
    hyper = step(pipeline_mode, "TrainModel")["Arguments"]["HyperParameters"]
    assert hyper["debugger_hook"] == '"pipeline"'
    trials = step(pipeline_mode, "TuneHyperparameters")["Arguments"]["TrainingJobDefinition"]
    assert "debugger_hook" not in trials["StaticHyperParameters"]


def test_pipeline_mode_checks_the_rules_on_train_model_s_output_archive(pipeline_mode):
    rules = step(pipeline_mode, "CheckTrainingRules")
    args = rules["Arguments"]
    assert args["AppSpecification"]["ContainerEntrypoint"][-1].endswith("/check_rules.py")
    assert args["AppSpecification"]["ImageUri"] == CPU_PROCESSING
    assert args["ProcessingResources"]["ClusterConfig"]["InstanceType"] == {
        "Get": "Parameters.EvaluationInstanceType"
    }
    inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
    assert inputs["training"]["LocalPath"] == "/opt/ml/processing/training"
    # <S3OutputPath>/<TrainingJobName>/output/output.tar.gz, where SageMaker puts it.
    assert inputs["training"]["S3Uri"] == {
        "Std:Join": {
            "On": "/",
            "Values": [
                {"Get": "Steps.TrainModel.OutputDataConfig.S3OutputPath"},
                {"Get": "Steps.TrainModel.TrainingJobName"},
                "output",
                "output.tar.gz",
            ],
        }
    }
    given = _container_arguments(rules)
    assert given["--tensors-archive"] == "/opt/ml/processing/training/output.tar.gz"
    assert given["--tensors-path"] == "tensors"
    assert given["--timing-path"] == "timing.json"
    assert given["--output-dir"] == "/opt/ml/processing/rules"
    (output,) = args["ProcessingOutputConfig"]["Outputs"]
    assert (output["OutputName"], output["S3Output"]["LocalPath"]) == (
        "rules",
        "/opt/ml/processing/rules",
    )
    assert "Execution.PipelineExecutionId" in set(references(output["S3Output"]["S3Uri"]))
    assert rules["PropertyFiles"] == [
        {"FilePath": "rules.json", "OutputName": "rules", "PropertyFileName": "TrainingRules"}
    ]
    assert rules["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}


def test_pipeline_mode_runs_the_rules_of_service_mode_with_their_parameters(
    pipeline_mode, definition
):
    entries = json.loads(_container_arguments(step(pipeline_mode, "CheckTrainingRules"))["--rules"])
    service = step(definition, "TrainModel")["Arguments"]["DebugRuleConfigurations"]
    assert entries == [
        {key: rule[key] for key in ("RuleConfigurationName", "RuleParameters")} for rule in service
    ]
    assert [entry["RuleConfigurationName"] for entry in entries] == RULES
    poor = entries[-1]["RuleParameters"]
    assert poor["activation_inputs_regex"] == RELU_INPUTS


def test_pipeline_mode_s_hook_saves_what_service_mode_s_hook_config_asks_for(definition):
    from dogbreed_jobs import contract

    hook = step(definition, "TrainModel")["Arguments"]["DebugHookConfig"]
    assert hook["HookParameters"] == contract.HOOK_PARAMETERS
    own = {
        c["CollectionName"]: c["CollectionParameters"] for c in contract.PIPELINE_HOOK_COLLECTIONS
    }
    for collection in hook["CollectionConfigurations"]:
        assert own[collection["CollectionName"]] == collection["CollectionParameters"]
    # losses: smdebug's default collection in service mode; weights: the pipeline's addition.
    assert set(own) == {"losses", "weights", "gradients", "relu_input"}


def test_the_relu_input_regex_samples_every_depth_of_densenet_in_both_modes(definition):
    hook = step(definition, "TrainModel")["Arguments"]["DebugHookConfig"]
    (relu,) = [c for c in hook["CollectionConfigurations"] if c["CollectionName"] == "relu_input"]
    assert relu["CollectionParameters"] == {"include_regex": RELU_INPUTS, "save_interval": "500"}
    rules = step(definition, "TrainModel")["Arguments"]["DebugRuleConfigurations"]
    (poor,) = [r for r in rules if r["RuleConfigurationName"] == "PoorWeightInitialization"]
    assert poor["RuleParameters"]["activation_inputs_regex"] == RELU_INPUTS
    pattern = re.compile(RELU_INPUTS)
    # smdebug's names of DenseNet-161's ReLU inputs: the stem, the first dense layer of each
    # block, every transition, and nothing else.
    sampled = ["features.relu0_input_0", "features.transition3.relu_input_0"]
    sampled += [
        f"features.denseblock{b}.denselayer1.relu{r}_input_0" for b in (1, 4) for r in (1, 2)
    ]
    skipped = [
        "features.denseblock1.denselayer10.relu1_input_0",
        "features.denseblock2.denselayer2.relu2_input_0",
        "features.denseblock3.denselayer21.relu1_input_0",
        "classifier.1_input_0",
    ]
    assert all(pattern.fullmatch(name) for name in sampled)
    assert not any(pattern.fullmatch(name) for name in skipped)


def _with_champion_gate(before: dict, definition: dict) -> None:
    """Issue 24's gate: CompareWithDeployed moves before EvaluateModel (it names the serving
    model, which EvaluateModel scores too: one more input and its arguments), the ChampionMetric
    and ChampionTolerance parameters, and CheckChampion between CheckModelChanged and what it
    guarded."""
    names = [p["Name"] for p in definition["Parameters"]]
    for name in ("ChampionMetric", "ChampionTolerance"):
        added = definition["Parameters"][names.index(name)]
        before["Parameters"].insert(names.index(name), added)
    accuracy = step(before, "CheckAccuracy")["Arguments"]
    compare, changed = accuracy["IfSteps"]
    accuracy["IfSteps"] = [changed]
    compared = step(definition, "CompareWithDeployed")["Arguments"]["AppSpecification"]
    assert compared["ContainerArguments"][-2] == "--no-champion-uri"
    compare["Arguments"]["AppSpecification"]["ContainerArguments"] += compared[
        "ContainerArguments"
    ][-2:]
    compare["Description"] = step(definition, "CompareWithDeployed")["Description"]
    before["Steps"].insert(3, compare)
    evaluation = step(before, "EvaluateModel")["Arguments"]
    now = step(definition, "EvaluateModel")["Arguments"]
    evaluation["ProcessingInputs"].append(now["ProcessingInputs"][-1])
    arguments = evaluation["AppSpecification"]["ContainerArguments"]
    arguments += now["AppSpecification"]["ContainerArguments"][len(arguments) :]
    gate = copy.deepcopy(step(definition, "CheckChampion"))
    gate["Arguments"]["IfSteps"] = changed["Arguments"]["IfSteps"]
    changed["Arguments"]["IfSteps"] = [gate]


RELEASE_PARAMETERS = (
    "EndpointInstanceCount",
    "EndpointMinInstances",
    "EndpointMaxInstances",
    "InvocationsPerInstanceTarget",
    "EndpointBakeSeconds",
)


def _with_release_job(before: dict, definition: dict) -> None:
    """Issue 24's safe releases: the DeployEndpoint job (blue/green with auto-rollback alarms,
    then autoscaling) in place of the endpoint configuration and endpoint steps, and the
    capacity and bake parameters after EndpointInstanceType."""
    new = {p["Name"]: p for p in definition["Parameters"]}
    names = [p["Name"] for p in before["Parameters"]]
    at = names.index("EndpointInstanceType") + 1
    before["Parameters"][at:at] = [new[name] for name in RELEASE_PARAMETERS]
    for entry in iter_steps(before):
        if entry.name == "CheckApproval":
            if_steps = entry.arguments["IfSteps"]
            assert [s["Name"] for s in if_steps][1:] == ["CreateEndpointConfig", "DeployEndpoint"]
            if_steps[1:] = [step(definition, "DeployEndpoint")]


def _with_bf16_serving(before: dict) -> None:
    """Issue 20's additions: the Bf16MinAgreement parameter, EvaluateModel's argument for it,
    the evaluation's bf16 verdict in the environment of the registered and created model, and
    the default endpoint type with native bf16."""
    names = [p["Name"] for p in before["Parameters"]]
    for parameter in before["Parameters"]:
        if parameter["Name"] == "EndpointInstanceType":
            parameter["DefaultValue"] = "ml.c7i.xlarge"
    before["Parameters"].insert(
        names.index("AccuracyThreshold") + 1,
        {"DefaultValue": 1.0, "Name": "Bf16MinAgreement", "Type": "Float"},
    )
    step(before, "EvaluateModel")["Arguments"]["AppSpecification"]["ContainerArguments"] += [
        "--bf16-min-agreement",
        {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.Bf16MinAgreement"}]}},
    ]
    verdict = {
        "Std:JsonGet": {
            "Path": "serving.environment.DOGBREED_BF16_ALLOWED",
            "PropertyFile": {"Get": "Steps.EvaluateModel.PropertyFiles.EvaluationReport"},
        }
    }
    for entry in iter_steps(before):
        if entry.type == "Model":
            entry.arguments["PrimaryContainer"]["Environment"]["DOGBREED_BF16_ALLOWED"] = verdict
        if entry.type == "RegisterModel":
            spec = entry.arguments["InferenceSpecification"]
            for container in spec["Containers"]:
                container["Environment"]["DOGBREED_BF16_ALLOWED"] = verdict
            for kind in (
                "SupportedRealtimeInferenceInstanceTypes",
                "SupportedTransformInstanceTypes",
            ):
                spec[kind].insert(0, "ml.c7i.xlarge")


def test_service_mode_changes_only_by_the_relu_regex_and_later_issues(definition):
    """The committed definition before issue 11, with the regex fix, issue 20's Ray Serve image
    and bf16 serving, and issue 22's batch sizes and weights channel applied: nothing else."""
    before = json.loads(
        subprocess.run(
            ["git", "show", "fb9efb0:pipeline_definition.json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    args = step(before, "TrainModel")["Arguments"]
    (relu,) = [
        c for c in args["DebugHookConfig"]["CollectionConfigurations"]
        if c["CollectionName"] == "relu_input"
    ]  # fmt: skip
    relu["CollectionParameters"]["include_regex"] = RELU_INPUTS
    args["DebugRuleConfigurations"][-1]["RuleParameters"]["activation_inputs_regex"] = RELU_INPUTS
    # Issue 20: the Ray Serve image, whose model needs no environment but the bf16 verdict.
    created = step(before, "CreateModel-CreateModel")["Arguments"]["PrimaryContainer"]
    created.update(Environment={}, Image=RAY_CPU_IMAGE)
    register = step(before, "RegisterModel-RegisterModel")["Arguments"]
    (container,) = register["InferenceSpecification"]["Containers"]
    container.update(Environment={}, Image=RAY_CPU_IMAGE, FrameworkVersion="2.10.0")
    _with_bf16_serving(before)
    # Issue 22: the published batch sizes, 128 included.
    tuning = step(before, "TuneHyperparameters")["Arguments"]["HyperParameterTuningJobConfig"]
    (batch,) = tuning["ParameterRanges"]["CategoricalParameterRanges"]
    batch["Values"].append('"128"')
    # ...and its weights parameter and channel.
    weights = next(p for p in definition["Parameters"] if p["Name"] == "PretrainedWeightsUrl")
    before["Parameters"].insert(definition["Parameters"].index(weights), weights)
    channel = step(definition, "TrainModel")["Arguments"]["InputDataConfig"][-1]
    args["InputDataConfig"].append(channel)
    tuning_job = step(before, "TuneHyperparameters")["Arguments"]["TrainingJobDefinition"]
    tuning_job["InputDataConfig"].append(channel)
    _with_champion_gate(before, definition)
    _with_release_job(before, definition)
    assert _without_code_hash(json.dumps(definition, sort_keys=True)) == _without_code_hash(
        json.dumps(before, sort_keys=True)
    )


def test_the_rules_gate_follows_the_accuracy_and_names_the_rule_when_it_blocks(pipeline_mode):
    declared = {p["Name"]: p for p in pipeline_mode["Parameters"]}
    assert declared["RuleIssuesBlockRegistration"] == {
        "DefaultValue": False,
        "Name": "RuleIssuesBlockRegistration",
        "Type": "Boolean",
    }
    top = [s["Name"] for s in pipeline_mode["Steps"]]
    assert top == [
        "PrepareData",
        "TuneHyperparameters",
        "TrainModel",
        "CompareWithDeployed",
        "EvaluateModel",
        "CheckTrainingRules",
        "CheckAccuracy",
    ]
    accuracy = step(pipeline_mode, "CheckAccuracy")["Arguments"]
    assert [s["Name"] for s in accuracy["IfSteps"]] == ["CheckRuleFindings"]
    gate = step(pipeline_mode, "CheckRuleFindings")["Arguments"]
    assert [s["Name"] for s in gate["IfSteps"]] == ["CheckModelChanged"]
    (condition,) = gate["Conditions"]
    assert condition["Type"] == "Or"
    blocking_off, no_issues = condition["Conditions"]
    assert blocking_off == {
        "Type": "Equals",
        "LeftValue": {"Get": "Parameters.RuleIssuesBlockRegistration"},
        "RightValue": False,
    }
    assert no_issues["Type"] == "Equals" and no_issues["RightValue"] == 0
    json_get = no_issues["LeftValue"]["Std:JsonGet"]
    assert json_get["Path"] == "issues"
    assert json_get["PropertyFile"] == {
        "Get": "Steps.CheckTrainingRules.PropertyFiles.TrainingRules"
    }
    (fail,) = gate["ElseSteps"]
    assert (fail["Name"], fail["Type"]) == ("RuleIssuesFound", "Fail")
    message = fail["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert message[1]["Std:JsonGet"]["Path"] == "finding"
    assert "RuleIssuesBlockRegistration" in json.dumps(message)


def test_a_bad_debugger_mode_is_refused_naming_the_modes():
    with pytest.raises(
        ValueError, match=r"debugger mode 'on' is not one of service, pipeline, off"
    ):
        PipelineConfig(debugger="on")


def test_job_steps_retry_throttling_and_capacity_errors_and_cache(definition):
    for name in ("PrepareData", "TuneHyperparameters", "TrainModel", "EvaluateModel"):
        s = step(definition, name)
        kinds = {k for policy in s["RetryPolicies"] for k in policy["ExceptionType"]}
        assert {"Step.THROTTLING", "SageMaker.CAPACITY_ERROR"} <= kinds, name
        assert s["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}


def test_a_quota_limit_is_retried_once_capacity_and_internal_errors_four_times(definition):
    for name in ("PrepareData", "TuneHyperparameters", "TrainModel", "EvaluateModel"):
        attempts = {
            kind: policy["MaxAttempts"]
            for policy in step(definition, name)["RetryPolicies"]
            for kind in policy["ExceptionType"]
        }
        assert attempts["SageMaker.RESOURCE_LIMIT"] == 1, name
        assert attempts["SageMaker.CAPACITY_ERROR"] == 4, name
        assert attempts["SageMaker.JOB_INTERNAL_ERROR"] == 4, name


def test_trials_stop_early_and_every_training_job_is_capped_by_max_training_seconds(definition):
    tuning = step(definition, "TuneHyperparameters")["Arguments"]
    assert tuning["HyperParameterTuningJobConfig"]["TrainingJobEarlyStoppingType"] == "Auto"
    limit = {"Get": "Parameters.MaxTrainingSeconds"}
    trial = tuning["TrainingJobDefinition"]
    assert trial["StoppingCondition"] == {"MaxRuntimeInSeconds": limit}
    assert step(definition, "TrainModel")["Arguments"]["StoppingCondition"] == {
        "MaxRuntimeInSeconds": limit
    }
    declared = {p["Name"]: p for p in definition["Parameters"]}
    assert declared["MaxTrainingSeconds"]["DefaultValue"] == 86_400
    # Spot is opt-in: the committed definition bills on-demand capacity.
    assert "EnableManagedSpotTraining" not in trial
    assert "EnableManagedSpotTraining" not in step(definition, "TrainModel")["Arguments"]


def test_spot_runs_trials_and_training_on_spot_capacity_within_max_training_seconds():
    spot = definition_dict(PipelineConfig(use_spot=True))
    limit = {"Get": "Parameters.MaxTrainingSeconds"}
    trial = step(spot, "TuneHyperparameters")["Arguments"]["TrainingJobDefinition"]
    training = step(spot, "TrainModel")["Arguments"]
    for job in (trial, training):
        assert job["EnableManagedSpotTraining"] is True
        assert job["StoppingCondition"] == {
            "MaxRuntimeInSeconds": limit,
            "MaxWaitTimeInSeconds": limit,
        }
    # An interrupted TrainModel resumes from the checkpoints it already writes.
    assert training["CheckpointConfig"]["S3Uri"]


def test_caching_can_be_switched_off():
    d = definition_dict(PipelineConfig(enable_caching=False))
    assert step(d, "TrainModel")["CacheConfig"]["Enabled"] is False


def test_evaluation_reads_the_test_split_and_publishes_a_property_file(definition):
    s = step(definition, "EvaluateModel")
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in s["Arguments"]["ProcessingInputs"]}
    assert inputs["test"] == {
        "Get": "Steps.PrepareData.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"
    }
    assert inputs["model"] == {"Get": "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts"}
    assert s["PropertyFiles"] == [
        {
            "FilePath": "evaluation.json",
            "OutputName": "evaluation",
            "PropertyFileName": "EvaluationReport",
        }
    ]


def test_condition_compares_test_accuracy_with_the_threshold(definition):
    args = step(definition, "CheckAccuracy")["Arguments"]
    (condition,) = args["Conditions"]
    assert condition["Type"] == "GreaterThanOrEqualTo"
    assert condition["LeftValue"]["Std:JsonGet"]["Path"] == (
        "multiclass_classification_metrics.accuracy.value"
    )
    assert condition["RightValue"] == {"Get": "Parameters.AccuracyThreshold"}
    assert [s["Name"] for s in args["IfSteps"]] == ["CheckModelChanged"]
    (fail,) = args["ElseSteps"]
    assert fail["Type"] == "Fail"
    message = json.dumps(fail["Arguments"]["ErrorMessage"])
    assert "multiclass_classification_metrics.accuracy.value" in message
    assert "Parameters.AccuracyThreshold" in message


def test_only_a_new_model_is_registered_and_only_an_approved_version_deployed(definition):
    compare = step(definition, "CompareWithDeployed")
    assert "CacheConfig" not in compare  # the endpoint changes while the arguments do not
    arguments = compare["Arguments"]["AppSpecification"]["ContainerArguments"]
    given = dict(zip(arguments[::2], arguments[1::2], strict=True))
    assert given["--model-data"] == {"Get": "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts"}
    assert given["--endpoint-name"] == {"Get": "Parameters.EndpointName"}
    assert given["--model-package-group"] == "dogbreed-classifier"
    assert compare["PropertyFiles"][0]["FilePath"] == "model_change.json"

    changed = step(definition, "CheckModelChanged")["Arguments"]
    (condition,) = changed["Conditions"]
    assert condition["Type"] == "Equals" and condition["RightValue"] == "new"
    json_get = condition["LeftValue"]["Std:JsonGet"]
    assert json_get["Path"] == "decision"
    assert json_get["PropertyFile"] == {
        "Get": "Steps.CompareWithDeployed.PropertyFiles.ModelChange"
    }
    assert [s["Name"] for s in changed["IfSteps"]] == ["CheckChampion"]
    assert changed["ElseSteps"] == []
    champion = step(definition, "CheckChampion")["Arguments"]
    assert [s["Name"] for s in champion["IfSteps"]] == [
        "RegisterModel-RegisterModel",
        "CheckApproval",
    ]

    approval = step(definition, "CheckApproval")["Arguments"]
    (condition,) = approval["Conditions"]
    # The registered version's own status, not the parameter that asked for it.
    assert condition["LeftValue"] == {
        "Get": "Steps.RegisterModel-RegisterModel.ModelApprovalStatus"
    }
    assert condition["Type"] == "Equals" and condition["RightValue"] == "Approved"
    assert [s["Type"] for s in approval["IfSteps"]] == ["Model", "Processing"]
    assert approval["ElseSteps"] == []


def test_executions_create_no_experiments_trials(definition):
    assert definition["PipelineExperimentConfig"] is None


def test_registration_uses_the_group_approval_parameter_metrics_and_packed_handlers(definition):
    args = step(definition, "RegisterModel-RegisterModel")["Arguments"]
    assert args["ModelPackageGroupName"] == "dogbreed-classifier"
    assert args["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    stats = args["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert "Steps.EvaluateModel.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri" in (
        set(references(stats["S3Uri"]))
    )
    # The Ray Serve DLC runs the config.yaml packed in model.tar.gz: the environment carries
    # only the evaluation's bf16 verdict.
    (container,) = args["InferenceSpecification"]["Containers"]
    assert list(container["Environment"]) == ["DOGBREED_BF16_ALLOWED"]
    assert references(container["Environment"]) == [
        "Steps.EvaluateModel.PropertyFiles.EvaluationReport"
    ]
    assert container["Image"] == RAY_CPU_IMAGE


def test_torchserve_registers_and_deploys_the_packed_handlers_with_one_worker():
    definition = definition_dict(PipelineConfig(serving="torchserve"))
    deployed = step(definition, "CreateModel-CreateModel")["Arguments"]["PrimaryContainer"]
    register = step(definition, "RegisterModel-RegisterModel")["Arguments"]
    (container,) = register["InferenceSpecification"]["Containers"]
    assert container["Environment"] == deployed["Environment"]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert container["Environment"]["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"
    assert container["Image"] == deployed["Image"] == CPU_INFERENCE
    assert container["FrameworkVersion"] == "2.6.0"


def test_a_gpu_endpoint_runs_the_ray_cuda_image_on_its_host_ami():
    definition = definition_dict(PipelineConfig(gpu_endpoint=True))
    images = _images_by_step(definition)
    assert images["CreateModel-CreateModel"] == {f"{US_EAST_1}/ray:serve-ml-sagemaker-cuda-v1"}
    assert release_args(definition)["inference-ami-version"] == (
        "al2-ami-sagemaker-inference-gpu-3-1"
    )
    defaults = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    assert defaults["EndpointInstanceType"] == "ml.g5.xlarge"
    assert _registered_instances(PipelineConfig(gpu_endpoint=True))[0] == [
        "ml.g4dn.xlarge",
        "ml.g5.xlarge",
    ]
    # The CPU endpoint keeps SageMaker's default host AMI.
    assert "inference-ami-version" not in release_args(definition_dict(PipelineConfig()))


def test_a_torchserve_gpu_endpoint_gets_the_sdks_gpu_inference_image_and_no_ami():
    definition = definition_dict(PipelineConfig(serving="torchserve", gpu_endpoint=True))
    images = _images_by_step(definition)
    assert images["CreateModel-CreateModel"] == {f"{US_EAST_1}/pytorch-inference:2.6.0-gpu-py312"}
    assert "inference-ami-version" not in release_args(definition)


def test_serving_flags_reach_the_config_and_a_bad_stack_is_refused():
    from pipeline import cli
    from pipeline.cli import options

    args = cli.build_parser().parse_args(["export", "--serving", "torchserve", "--gpu-endpoint"])
    config = options.config_from(args)
    assert (config.serving, config.gpu_endpoint) == ("torchserve", True)
    config = options.config_from(cli.build_parser().parse_args(["export"]))
    assert (config.serving, config.gpu_endpoint) == ("ray", False)
    with pytest.raises(ValueError, match="serving stack 'tfserving' is not one of ray, torchserve"):
        PipelineConfig(serving="tfserving")


def release_args(definition: dict) -> dict:
    from pipeline.deployment import release_arguments

    return release_arguments(step(definition, "DeployEndpoint")["Arguments"])


def test_endpoint_is_named_by_parameter_with_a_fresh_config_per_execution(definition):
    released = release_args(definition)
    assert parameter_refs(released["config-name"]) == {"EndpointName"}
    assert "Execution.PipelineExecutionId" in set(references(released["config-name"]))
    assert released["instance-type"] == {"Get": "Parameters.EndpointInstanceType"}
    assert released["endpoint-name"] == {"Get": "Parameters.EndpointName"}


def test_the_release_job_gets_capacity_and_bake_from_parameters_and_the_rule_s_alarms(definition):
    deploy = step(definition, "DeployEndpoint")
    assert deploy["Type"] == "Processing" and "CacheConfig" not in deploy
    arguments = deploy["Arguments"]
    assert arguments["AppSpecification"]["ContainerEntrypoint"][-1].endswith("/release.py")
    # Not network-isolated: the job calls SageMaker, CloudWatch and Application Auto Scaling.
    assert not arguments.get("NetworkConfig", {}).get("EnableNetworkIsolation")
    released = release_args(definition)
    for flag, parameter in (
        ("instance-count", "EndpointInstanceCount"),
        ("min-instances", "EndpointMinInstances"),
        ("max-instances", "EndpointMaxInstances"),
        ("invocations-target", "InvocationsPerInstanceTarget"),
        ("bake-seconds", "EndpointBakeSeconds"),
    ):
        assert parameter_refs(released[flag]) == {parameter}, flag
    values = arguments["AppSpecification"]["ContainerArguments"]
    alarms = [values[i + 1] for i, flag in enumerate(values) if flag == "--alarm"]
    joined = [
        "".join("<EndpointName>" if isinstance(v, dict) else v for v in a["Std:Join"]["Values"])
        for a in alarms
    ]
    assert joined == alarm_names("<EndpointName>")
    defaults = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    assert [defaults[n] for n in ("EndpointInstanceCount", "EndpointMinInstances")] == [1, 1]
    assert defaults["EndpointMaxInstances"] == 4 and defaults["EndpointBakeSeconds"] == 600
    assert deploy["PropertyFiles"] == [
        {"FilePath": "release.json", "OutputName": "release", "PropertyFileName": "Release"}
    ]


def test_code_bundle_is_reproducible_and_content_addressed(tmp_path):
    copy = tmp_path / "scripts"
    shutil.copytree(entries_dir(), copy)
    for path in copy.rglob("*"):
        os.utime(path, (1, 1))
    (copy / "notes.md").write_text("not shipped")
    original, copied = Bundle.from_dir(), Bundle.from_dir(copy)
    assert copied.tarball == original.tarball
    model = copy / "dogbreed_jobs" / "model.py"
    model.write_text(model.read_text() + "\n# changed\n")
    changed = Bundle.from_dir(copy)
    config = PipelineConfig()
    assert changed.tarball_uri(config) != original.tarball_uri(config)
    assert original.sha256[:16] in original.tarball_uri(config)
    assert "notes.md" not in original.files and "notes.md" not in changed.files


def test_config_renders_the_users_role_bucket_and_region():
    config = PipelineConfig(
        role_arn="arn:aws:iam::123456789012:role/MyRole", bucket="my-ml-bucket", region="eu-west-1"
    )
    text = definition_json(config)
    assert "arn:aws:iam::123456789012:role/MyRole" in text
    assert "s3://my-ml-bucket/dogbreed-pipeline/" in text
    assert "111122223333" not in text
    assert "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch:2.13.0-" in text


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("role_arn", "arn:aws:iam::123:role/x", "not an IAM role ARN"),
        ("bucket", "My_Bucket", "not a valid S3 bucket name"),
        ("region", "moon-1", "not an AWS region name"),
        ("pipeline_name", "bad name!", "only letters, digits and hyphens"),
    ],
)
def test_config_rejects_malformed_values_with_a_clear_message(field, value, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig(**{field: value})


# --------------------------------------------------------------------------- build shortcuts
# pipeline/definition.py skips work the SDK repeats during a build. These tests fail if an
# SDK or botocore upgrade makes a shortcut ineffective, or if one leaks out of the build.


def test_a_build_validates_our_sdk_config_once_and_restores_the_sdk_and_boto3(monkeypatch):
    """Session() validates SDK_CONFIG; a build's ~90 config lookups do not re-validate it."""
    import boto3
    import botocore.credentials
    import jsonschema
    import sagemaker.config.config as sdk_config
    import sagemaker.utils

    from pipeline.definition import SDK_CONFIG

    validated = []
    validate = jsonschema.validate

    def counting_validate(instance, schema, *args, **kwargs):
        validated.append(instance)
        return validate(instance, schema, *args, **kwargs)

    monkeypatch.setattr(sdk_config.jsonschema, "validate", counting_validate)
    original = sagemaker.utils.validate_sagemaker_config
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    # Estimators create clients on boto3's default session: during a build that must be the
    # offline session, whose inert credentials need no lookup on this machine.
    monkeypatch.setattr(
        botocore.credentials.CredentialResolver,
        "load_credentials",
        lambda self: pytest.fail("the build looked for AWS credentials"),
    )
    definition_dict(PipelineConfig())
    # Each Session() validates it (the build makes a few); the lookups would add ~90.
    assert 1 <= sum(instance is SDK_CONFIG for instance in validated) <= 5
    assert boto3.DEFAULT_SESSION is None
    assert sagemaker.utils.validate_sagemaker_config is original
    with pytest.raises(jsonschema.ValidationError):
        sagemaker.utils.validate_sagemaker_config({"SchemaVersion": "1.0", "Unknown": {}})


# --------------------------------------------------------------------------- images
# The instance types are pipeline parameters, so each step's image is fixed by its kind at
# build time: GPU training image for tuning and training, CPU image for processing, the CPU
# inference image for the model (README, "Images").

US_EAST_1 = "763104351884.dkr.ecr.us-east-1.amazonaws.com"
GPU_TRAINING = f"{US_EAST_1}/pytorch:2.13.0-cu133-amzn2023-sagemaker"
CPU_PROCESSING = f"{US_EAST_1}/pytorch:2.13.0-cpu-amzn2023-sagemaker"
CPU_INFERENCE = f"{US_EAST_1}/pytorch-inference:2.6.0-cpu-py312"
RAY_CPU_IMAGE = f"{US_EAST_1}/ray:serve-ml-sagemaker-cpu-v1"
IMAGE_KEYS = ("ImageUri", "TrainingImage", "Image")


def _images_by_step(definition: dict) -> dict[str, set[str]]:
    """Every container image each step names (the Debugger rule evaluators' aside)."""

    def found(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if key in IMAGE_KEYS and isinstance(item, str):
                    yield item
                else:
                    yield from found(item)
        elif isinstance(value, list):
            for item in value:
                yield from found(item)

    return {entry.name: set(found(entry.arguments)) for entry in iter_steps(definition)}


def test_each_step_runs_the_image_of_its_kind(definition):
    images = _images_by_step(definition)
    for name in ("PrepareData", "EvaluateModel", "CompareWithDeployed"):
        assert images[name] == {CPU_PROCESSING}, name
    for name in ("TuneHyperparameters", "TrainModel"):
        assert images[name] == {GPU_TRAINING}, name
    for name in ("RegisterModel-RegisterModel", "CreateModel-CreateModel"):
        assert images[name] == {RAY_CPU_IMAGE}, name
    # Every step that runs a container was seen above: none is left on another image.
    assert {image for found in images.values() for image in found} == {
        GPU_TRAINING,
        CPU_PROCESSING,
        RAY_CPU_IMAGE,
    }


def test_the_registered_package_names_the_serving_framework_version(definition):
    args = step(definition, "RegisterModel-RegisterModel")["Arguments"]
    (container,) = args["InferenceSpecification"]["Containers"]
    # The Ray Serve DLC's torch.
    assert (container["Framework"], container["FrameworkVersion"]) == ("PYTORCH", "2.10.0")


@pytest.mark.parametrize(
    ("region", "registry"),
    [
        ("us-east-1", US_EAST_1),
        ("eu-west-1", "763104351884.dkr.ecr.eu-west-1.amazonaws.com"),
        # Opt-in regions have their own DLC account; China has its own ECR domain.
        ("ap-east-1", "871362719292.dkr.ecr.ap-east-1.amazonaws.com"),
        ("cn-north-1", "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn"),
        ("us-gov-west-1", "442386744353.dkr.ecr.us-gov-west-1.amazonaws.com"),
    ],
)
def test_the_images_come_from_the_regions_dlc_registry_as_the_sdk_names_it(region, registry):
    from pipeline.definition import images

    found = images(PipelineConfig(region=region))
    assert found.training == f"{registry}/pytorch:2.13.0-cu133-amzn2023-sagemaker"
    assert found.processing == f"{registry}/pytorch:2.13.0-cpu-amzn2023-sagemaker"
    assert found.inference == f"{registry}/ray:serve-ml-sagemaker-cpu-v1"
    torchserve = images(PipelineConfig(region=region, serving="torchserve"))
    assert torchserve.inference == f"{registry}/pytorch-inference:2.6.0-cpu-py312"


def test_a_china_region_definition_names_only_that_regions_registry():
    images = _images_by_step(definition_dict(PipelineConfig(region="cn-north-1")))
    hosts = {image.split("/", 1)[0] for found in images.values() for image in found}
    assert hosts == {"727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn"}


def test_a_region_the_sdk_does_not_know_is_refused_with_the_way_out():
    from pipeline.definition import images
    from pipeline.errors import UsageError

    with pytest.raises(UsageError, match=r"xx-east-9.*--training-image"):
        images(PipelineConfig(region="xx-east-9"))


OWN = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def test_overridden_images_replace_the_defaults_per_kind():
    config = PipelineConfig(
        region="eu-west-1",
        training_image=f"{OWN}/dogbreed/train:1.0",
        processing_image=f"{OWN}/dogbreed/process@sha256:" + "a" * 64,
        inference_image=f"{OWN}/dogbreed/serve:2026-12-01",
    )
    images = _images_by_step(definition_dict(config))
    assert images["TrainModel"] == images["TuneHyperparameters"] == {config.training_image}
    assert images["PrepareData"] == images["EvaluateModel"] == {config.processing_image}
    assert images["CreateModel-CreateModel"] == {config.inference_image}
    # Another image's torch version is unknown: the package claims none.
    args = step(definition_dict(config), "RegisterModel-RegisterModel")["Arguments"]
    assert "FrameworkVersion" not in args["InferenceSpecification"]["Containers"][0]


def test_one_override_keeps_the_other_defaults():
    from pipeline.definition import images

    found = images(PipelineConfig(inference_image=f"{US_EAST_1}/pytorch-inference:2.6.0-gpu-py312"))
    assert (found.training, found.processing) == (GPU_TRAINING, CPU_PROCESSING)
    assert found.inference == f"{US_EAST_1}/pytorch-inference:2.6.0-gpu-py312"


def test_the_sdk_lookup_runs_once_per_region_and_not_at_all_with_every_image_given(monkeypatch):
    from sagemaker import image_uris

    from pipeline import definition

    calls = []
    retrieve = image_uris.retrieve
    monkeypatch.setattr(image_uris, "retrieve", lambda **kw: calls.append(kw) or retrieve(**kw))
    definition.sdk_inference_image.cache_clear()
    try:
        definition.images(PipelineConfig(region="eu-north-1"))
        definition.images(PipelineConfig(region="eu-north-1"))
        assert [call["region"] for call in calls] == ["eu-north-1"]
        given = {
            f"{kind}_image": f"{OWN.replace('eu-west-1', 'eu-south-1')}/x:{kind}"
            for kind in ("training", "processing", "inference")
        }
        definition.images(PipelineConfig(region="eu-south-1", **given))
        assert [call["region"] for call in calls] == ["eu-north-1"]
    finally:
        definition.sdk_inference_image.cache_clear()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("pytorch:2.13.0-cpu-amzn2023-sagemaker", "not an ECR image URI"),
        ("docker.io/library/python:3.12", "not an ECR image URI"),
        (f"{OWN}/dogbreed/train", "needs a :tag or @sha256:digest"),
        (f"{OWN}/Dogbreed:1", "not an ECR image URI"),
        ("763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch:2.13.0-cpu", "region us-west-2"),
        ("727897471807.dkr.ecr.cn-north-1.amazonaws.com/pytorch:2.13", "amazonaws.com.cn"),
    ],
)
def test_image_overrides_are_checked_with_a_clear_message(value, message):
    with pytest.raises(ValueError, match=message) as raised:
        PipelineConfig(
            region="eu-west-1" if "cn-north" not in value else "cn-north-1", processing_image=value
        )
    assert "processing image" in str(raised.value)


def test_image_flags_of_export_and_upsert_reach_the_config_and_bad_ones_are_usage_errors():
    from pipeline import cli
    from pipeline.cli import options
    from pipeline.errors import UsageError

    image = f"{US_EAST_1}/own:1"
    for argv in (["export"], ["upsert", "--role-arn", f"arn:aws:iam::{'1' * 12}:role/R"]):
        args = cli.build_parser().parse_args(
            [
                *argv,
                "--training-image",
                image,
                "--processing-image",
                image,
                "--inference-image",
                image,
            ]
        )
        config = options.config_from(args)
        assert config.training_image == config.processing_image == config.inference_image == image
        assert options.config_from(cli.build_parser().parse_args(argv)).training_image == ""
    args = cli.build_parser().parse_args(["export", "--inference-image", "latest"])
    with pytest.raises(UsageError, match="inference image 'latest' is not an ECR image URI"):
        options.config_from(args)


def _registered_instances(config: PipelineConfig) -> tuple[list, list]:
    register = step(definition_dict(config), "RegisterModel-RegisterModel")["Arguments"]
    spec = register["InferenceSpecification"]
    return spec["SupportedRealtimeInferenceInstanceTypes"], spec["SupportedTransformInstanceTypes"]


def test_the_registered_version_names_only_instance_types_its_image_serves_on():
    realtime, transform = _registered_instances(PipelineConfig())
    assert realtime == transform == ["ml.c7i.xlarge", "ml.m5.xlarge", "ml.c5.2xlarge"]
    gpu_image = f"{US_EAST_1}/pytorch-inference:2.6.0-gpu-py312"
    realtime, transform = _registered_instances(PipelineConfig(inference_image=gpu_image))
    assert {"ml.g4dn.xlarge", "ml.g5.xlarge"} <= set(realtime) == set(transform)
