"""MLflow tracking: the flag that puts it into the definition, and what a job does with it.

The definitions are the live build; the jobs' side (dogbreed_jobs.tracking) runs against real
MLflow stores: a SQLite file, and a port nothing listens on.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.definitions import step
from helpers.paths import SCRIPTS

from dogbreed_jobs import contract, tracking
from pipeline.cli import main
from pipeline.config import PipelineConfig
from pipeline.definition import definition_dict
from pipeline.definition_json import iter_steps
from pipeline.local import tracking as local_tracking
from pipeline.local.plan import check_definition
from pipeline.local.store import Store

ARN = "arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/dogbreed"
APP_ARN = "arn:aws:sagemaker:us-east-1:111122223333:mlflow-app/app-0123456789ab"
TRACKED = {"TuneHyperparameters", "TrainModel", "EvaluateModel"}


@pytest.fixture(scope="module")
def tracked() -> dict:
    return definition_dict(PipelineConfig(mlflow_tracking_arn=ARN))


@pytest.fixture(scope="module")
def default() -> dict:
    return definition_dict(PipelineConfig())


def environment_of(entry) -> dict:
    arguments = entry.arguments.get("TrainingJobDefinition") or entry.arguments
    return arguments.get("Environment") or {}


def test_the_arn_reaches_the_trials_train_model_and_evaluate_model_through_a_parameter(tracked):
    (parameter,) = [p for p in tracked["Parameters"] if p["Name"] == "MlflowTrackingUri"]
    assert parameter["DefaultValue"] == ARN
    envs = {entry.name: environment_of(entry) for entry in iter_steps(tracked)}
    assert {name for name, env in envs.items() if env} == TRACKED
    for name in TRACKED:
        env = envs[name]
        assert env[contract.TRACKING_URI_ENV] == {"Get": "Parameters.MlflowTrackingUri"}
        assert env[contract.EXECUTION_ID_ENV] == {"Get": "Execution.PipelineExecutionId"}
        assert env[contract.EXPERIMENT_ENV] == PipelineConfig().pipeline_name
        assert env[contract.STEP_NAME_ENV] == name
        assert len(env[contract.CODE_BUNDLE_ENV]) == 16
        assert env[contract.IMAGE_ENV].startswith("763104351884.dkr.ecr.us-east-1")
    assert envs["TuneHyperparameters"][contract.STEP_TYPE_ENV] == contract.TUNING_STEP_TYPE
    assert contract.STEP_TYPE_ENV not in envs["TrainModel"]


def test_the_registered_version_carries_the_training_run_id_from_the_evaluation(tracked):
    register = step(tracked, "RegisterModel-RegisterModel")["Arguments"]
    run_id = register["CustomerMetadataProperties"][contract.RUN_ID_METADATA]["Std:JsonGet"]
    assert run_id["Path"] == f"{contract.EVALUATION_MLFLOW_KEY}.{contract.TRAINING_RUN_ID_FIELD}"
    assert run_id["PropertyFile"] == {"Get": "Steps.EvaluateModel.PropertyFiles.EvaluationReport"}


def test_the_tracked_definition_differs_from_the_default_only_by_tracking(tracked, default):
    text = json.dumps(default)
    assert "MLFLOW" not in text and "Mlflow" not in text
    tracking_names = (
        contract.EXECUTION_ID_ENV,
        contract.STEP_NAME_ENV,
        contract.STEP_TYPE_ENV,
        contract.CODE_BUNDLE_ENV,
        contract.IMAGE_ENV,
        contract.ARTIFACT_ROOT_ENV,
    )
    assert not [name for name in tracking_names if name in text]
    stripped = json.loads(json.dumps(tracked))
    stripped["Parameters"] = [p for p in stripped["Parameters"] if p["Name"] != "MlflowTrackingUri"]
    for entry in iter_steps(stripped):
        arguments = entry.arguments.get("TrainingJobDefinition") or entry.arguments
        arguments.pop("Environment", None)
        entry.arguments.pop("CustomerMetadataProperties", None)
    assert stripped == default


def test_the_local_runner_accepts_the_tracked_definition_and_app_arns_are_valid(tracked):
    check_definition(json.loads(json.dumps(tracked)))
    assert PipelineConfig(mlflow_tracking_arn=APP_ARN).mlflow_tracking_arn == APP_ARN


@pytest.mark.parametrize(
    "arn, problem",
    [
        ("arn:aws:s3:::bucket", "is not a SageMaker MLflow tracking server or MLflow App ARN"),
        (
            ARN.replace("us-east-1", "eu-west-1"),
            "is in region eu-west-1, the pipeline in us-east-1",
        ),
        (ARN + "/extra", "is not a SageMaker MLflow tracking server or MLflow App ARN"),
        ("http://mlflow.example:5000", "is not a SageMaker MLflow"),
    ],
)
def test_a_wrong_tracking_arn_is_refused_in_one_line(arn, problem, capsys):
    code = main(["export", "--mlflow-tracking-arn", arn])
    out, err = capsys.readouterr()
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1
    assert problem in err


def test_tracking_and_network_isolation_are_refused_together(capsys):
    code = main(["export", "--mlflow-tracking-arn", ARN, "--network-isolation"])
    assert code == 2
    assert "MLflow tracking needs the jobs' network" in capsys.readouterr().err


# ------------------------------------------------------------------------ the jobs' side


@pytest.fixture
def job_env(monkeypatch, tmp_path):
    for key in (contract.EXECUTION_ID_ENV, contract.STEP_NAME_ENV, contract.STEP_TYPE_ENV):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv(contract.EXPERIMENT_ENV, "dogbreed-test")
    monkeypatch.setenv(contract.ARTIFACT_ROOT_ENV, str(tmp_path / "artifacts"))
    monkeypatch.setenv("TRAINING_JOB_NAME", "trial-001")
    return monkeypatch


def test_without_a_uri_nothing_is_tracked(job_env):
    job_env.delenv(contract.TRACKING_URI_ENV, raising=False)
    run = tracking.start(tracking.TRAINING, {"epochs": 1})
    assert not run.active and run.run_id == ""
    run.log_metrics({"valid_loss": 1.0}, step=1)
    run.end()
    assert tracking.evaluation_block(run) == {}


def test_an_unreachable_server_costs_one_warning_line_and_never_the_credentials(job_env, capsys):
    job_env.setenv(contract.TRACKING_URI_ENV, "http://user:s3cret@127.0.0.1:9")
    run = tracking.start(tracking.EVALUATION, {"test_images": 3})
    run.log_metrics({"test_accuracy": 0.5})
    run.log_artifact(__file__)
    run.end()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("WARNING: MLflow tracking at http://127.0.0.1:9 is unavailable")
    assert "s3cret" not in err and "user" not in err
    assert not run.active
    block = tracking.evaluation_block(run)[contract.EVALUATION_MLFLOW_KEY]
    assert set(block.values()) == {contract.RUN_ID_UNAVAILABLE}


# ------------------------------------------------------------------------ run-local's side


def test_run_local_tracks_into_its_store_unless_mlflow_tracking_uri_is_set(monkeypatch, tmp_path):
    store = Store(tmp_path / "store")
    monkeypatch.delenv(contract.TRACKING_URI_ENV, raising=False)
    uri = local_tracking.tracking_uri(store)
    assert uri == f"sqlite:///{tmp_path / 'store' / 'mlflow' / 'mlflow.db'}"
    assert local_tracking.base_environment(store)[contract.ARTIFACT_ROOT_ENV] == str(
        tmp_path / "store" / "mlflow" / "artifacts"
    )
    assert local_tracking.opening(uri) == f"mlflow ui --backend-store-uri {uri}"
    monkeypatch.setenv(contract.TRACKING_URI_ENV, "https://user:s3cret@mlflow.example/x?t=1")
    assert local_tracking.tracking_uri(store) == "https://user:s3cret@mlflow.example/x?t=1"
    assert local_tracking.base_environment(store) == {}
    # What the record keeps and the summary prints.
    assert local_tracking.shown_uri(store) == "https://mlflow.example"
    assert local_tracking.opening("https://mlflow.example") == "https://mlflow.example"


def test_run_local_gives_a_default_definition_s_job_steps_the_tracking_variables(default):
    nodes = check_definition(json.loads(json.dumps(default)))
    tuning = nodes["TuneHyperparameters"]
    env = local_tracking.step_environment(tuning, tuning.arguments, "local-1", "dogbreed")
    assert env[contract.EXECUTION_ID_ENV] == "local-1"
    assert env[contract.STEP_TYPE_ENV] == contract.TUNING_STEP_TYPE
    assert env[contract.IMAGE_ENV].endswith("pytorch:2.13.0-cu133-amzn2023-sagemaker")
    assert len(env[contract.CODE_BUNDLE_ENV]) == 16
    assert contract.TRACKING_URI_ENV not in env
    evaluation = nodes["EvaluateModel"]
    env = local_tracking.step_environment(evaluation, evaluation.arguments, "local-1", "dogbreed")
    assert env[contract.IMAGE_ENV].endswith("pytorch:2.13.0-cpu-amzn2023-sagemaker")
    assert contract.STEP_TYPE_ENV not in env


def test_mlflow_is_not_imported_by_the_jobs_without_a_uri():
    code = (
        "import sys, dogbreed_jobs.tracking as t; r = t.start('training', {'a': 1}); "
        "r.log_params({'b': 2}); r.log_metrics({'c': 3}); r.log_epoch({}, None); r.end(); "
        "print(*sys.modules)"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SCRIPTS)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert "mlflow" not in done.stdout.split()
