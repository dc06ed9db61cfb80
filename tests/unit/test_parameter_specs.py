"""What each pipeline parameter accepts: declared once, checked up front by `start`, `schedule`
and `run-local` (one line, exit 2, nothing started), and within what SageMaker's own service
model accepts for the fields the parameters feed."""

from __future__ import annotations

import json

import boto3
import botocore.session
import pytest
from helpers.awsfakes import SCHEDULER_ROLE, create_pipeline, one_error_line
from helpers.paths import ROOT

from dogbreed_jobs import contract
from pipeline import cli, parameter_specs, parameter_values
from pipeline.config import PipelineConfig
from pipeline.definition import definition_dict

COMMITTED = json.loads((ROOT / "pipeline_definition.json").read_text())

# A value each numeric parameter refuses, and the words of the refusal.
OUT_OF_RANGE = [
    (
        "ImageSize=-5",
        "ImageSize=-5: ImageSize (the crop side in pixels) must be between 32 and 1024",
    ),
    ("ImageSize=2048", "must be between 32 and 1024"),
    ("MaxImageSide=-1", "MaxImageSide=-1: MaxImageSide (the shorter side in pixels"),
    ("MaxImageSide=100", "MaxImageSide=100: smaller than ImageSize=224"),
    ("AccuracyThreshold=1.5", "AccuracyThreshold=1.5: AccuracyThreshold (the test accuracy"),
    ("AccuracyThreshold=-0.1", "must be between 0 and 1"),
    ("Bf16MinAgreement=1.01", "Bf16MinAgreement=1.01: Bf16MinAgreement (the share of test images"),
    ("ChampionTolerance=1.5", "ChampionTolerance=1.5: ChampionTolerance (how much worse than"),
    ("ChampionTolerance=-0.01", "must be between 0 and 1"),
    ("TrainingInstanceCount=0", "TrainingInstanceCount=0: TrainingInstanceCount (instances"),
    ("MaxTuningJobs=0", "MaxTuningJobs=0: MaxTuningJobs (tuning trials) must be at least 1"),
    ("MaxParallelTuningJobs=0", "must be at least 1"),
    ("MaxParallelTuningJobs=9", "more trials at once than MaxTuningJobs=8"),
    ("MaxTrainingSeconds=0", "MaxTrainingSeconds=0: MaxTrainingSeconds (seconds a job may run)"),
    ("MaxTrainingSeconds=2419201", "must be between 1 and 2419200"),
    ("EndpointName=-bad", "EndpointName=-bad: EndpointName must match"),
    ("EndpointInstanceCount=0", "EndpointInstanceCount=0: EndpointInstanceCount (instances"),
    ("EndpointInstanceCount=5", "EndpointInstanceCount=5, EndpointMaxInstances=4: they must"),
    ("EndpointMinInstances=0", "EndpointMinInstances=0: EndpointMinInstances (the fewest"),
    ("EndpointMinInstances=2", "EndpointMinInstances=2, EndpointInstanceCount=1,"),
    ("EndpointMaxInstances=0", "EndpointMaxInstances=0: EndpointMaxInstances (the most"),
    ("InvocationsPerInstanceTarget=0", "InvocationsPerInstanceTarget (the invocations per"),
    ("EndpointBakeSeconds=-1", "EndpointBakeSeconds=-1: EndpointBakeSeconds (seconds the new"),
    ("EndpointBakeSeconds=3601", "must be between 0 and 3600"),
    ("InputDataUrl=/data/dogs", "InputDataUrl=/data/dogs: InputDataUrl must match"),
]


def _sagemaker_shape(operation: str, *path: str):
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model(operation).input_shape
    for member in path:
        shape = shape.members[member]
    return shape.metadata


def test_every_numeric_parameter_refuses_a_value_out_of_its_range():
    numeric = {p["Name"] for p in COMMITTED["Parameters"] if p["Type"] in ("Integer", "Float")}
    refused = {param.split("=")[0] for param, _ in OUT_OF_RANGE}
    assert numeric <= refused


@pytest.mark.parametrize("debugger", ["service", "pipeline", "off"])
def test_every_parameter_has_a_spec_and_its_default_passes_it(debugger):
    definition = definition_dict(PipelineConfig(debugger=debugger))
    values = parameter_values.resolve(definition, [], "p")
    assert set(values) <= set(parameter_specs.SPECS)
    assert parameter_specs.problems(values, set(values)) == []
    for param in definition["Parameters"]:
        declared = parameter_specs.SPECS[param["Name"]]
        if declared.default is not None:
            assert param["DefaultValue"] == declared.default, param["Name"]


def test_the_bounds_lie_within_what_sagemakers_api_accepts():
    specs = parameter_specs.SPECS
    tuning = ("CreateHyperParameterTuningJob", "HyperParameterTuningJobConfig", "ResourceLimits")
    limits = {
        "MaxTuningJobs": _sagemaker_shape(*tuning, "MaxNumberOfTrainingJobs"),
        "MaxParallelTuningJobs": _sagemaker_shape(*tuning, "MaxParallelTrainingJobs"),
        "MaxTrainingSeconds": _sagemaker_shape(
            "CreateTrainingJob", "StoppingCondition", "MaxRuntimeInSeconds"
        ),
        "TrainingInstanceCount": _sagemaker_shape(
            "CreateTrainingJob", "ResourceConfig", "InstanceCount"
        ),
    }
    for name, shape in limits.items():
        assert specs[name].low >= shape["min"], name
        if "max" in shape:
            assert specs[name].high <= shape["max"], name
    endpoint = _sagemaker_shape("CreateEndpoint", "EndpointName")
    assert specs["EndpointName"].pattern == endpoint["pattern"]
    bake = _sagemaker_shape(
        "UpdateEndpoint", "DeploymentConfig", "BlueGreenUpdatePolicy", "TerminationWaitInSeconds"
    )
    assert (specs["EndpointBakeSeconds"].low, specs["EndpointBakeSeconds"].high) == (
        bake["min"],
        bake["max"],
    )


def test_the_image_size_bounds_are_the_training_scripts():
    spec = parameter_specs.SPECS["ImageSize"]
    assert (spec.low, spec.high) == contract.IMAGE_SIZE_RANGE


def test_values_inside_the_ranges_and_their_edges_pass():
    given = [
        ("ImageSize", "32"),
        ("MaxImageSide", "0"),
        ("AccuracyThreshold", "1"),
        ("MaxTuningJobs", "3"),
        ("MaxParallelTuningJobs", "3"),
        ("MaxTrainingSeconds", "2419200"),
        ("EndpointName", "dogs-2"),
    ]
    values = parameter_values.check(COMMITTED, given, "p")
    assert [value.text for value in values] == [text for _, text in given]


# --------------------------------------------------------------------------- the commands


@pytest.fixture
def real_pipeline(moto):
    return create_pipeline(definition=COMMITTED)


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("param", "words"), OUT_OF_RANGE)
def test_start_refuses_an_out_of_range_value_in_one_line_and_starts_nothing(
    real_pipeline, calls, capsys, param, words
):
    code, out, err = _run(capsys, "start", "--skip-quota-check", "--param", param)
    assert code == 2 and out == ""
    assert words in one_error_line(err)
    assert "StartPipelineExecution" not in calls.ops


def test_start_names_the_first_problem_and_counts_the_others(real_pipeline, capsys):
    code, _, err = _run(
        capsys, "start", "--param", "ImageSize=-5", "--param", "AccuracyThreshold=1.5"
    )
    assert code == 2
    line = one_error_line(err)
    assert "AccuracyThreshold=1.5" in line and "(and 1 more)" in line


def test_schedule_refuses_an_out_of_range_value_and_creates_no_schedule(real_pipeline, capsys):
    code, _, err = _run(
        capsys,
        "schedule",
        "--cron",
        "rate(1 day)",
        "--role-arn",
        SCHEDULER_ROLE,
        "--param",
        "AccuracyThreshold=1.5",
    )
    assert code == 2
    assert "AccuracyThreshold=1.5" in one_error_line(err)
    assert boto3.client("scheduler").list_schedules()["Schedules"] == []


@pytest.mark.parametrize(("param", "words"), OUT_OF_RANGE[:4])
def test_run_local_refuses_an_out_of_range_value_before_running_anything(
    tmp_path, capsys, param, words
):
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(COMMITTED))
    store = tmp_path / "store"
    argv = ["run-local", "--definition", str(path), "--store", str(store), "--param", param]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert words in one_error_line(err)
    assert not (store / "executions").exists()
