"""The exported definition's jobs under AWS's training toolkit, as SageMaker starts them.

One execution of the real definition (exported with network isolation) runs with
`run-local --container-python`: every job uses the container venv's Python, and the
training jobs start through `sagemaker_training` (SAGEMAKER_BASE_DIR in the job root), which
reads the /opt/ml/input/config files the runner derived from the definition's resolved
arguments, as the service derives them (parameter defaults, tuner-encoded categoricals,
the best trial's TunedHyperParameters). pip gets no index and HTTP a dead proxy: a job that
needs the internet fails here as it would with network isolation.

The job-level tests take TrainModel's resolved arguments from that execution and change one
hyperparameter each, named in the test: autocast forced on the CPU (bf16, fp16), two torchrun
processes.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from helpers.container_envs import INFERENCE, python_of
from helpers.definitions import torchserve_environment
from parity.conftest import OFFLINE, freeze

from pipeline.config import PipelineConfig
from pipeline.local.container import ContainerPython, Job
from pipeline.local.supervisor import JobFailed, Supervisor
from pipeline.local.training_job import run_training

TOOLKIT = "sagemaker-training-toolkit"


def _log(outcome, name: str) -> str:
    return Path(outcome.step(name)["LogPath"]).read_text(encoding="utf-8", errors="replace")


def test_the_whole_execution_succeeds_under_the_toolkit_without_the_internet(execution):
    outcome, _, _ = execution
    failed = [(s["StepName"], s.get("FailureReason")) for s in outcome.record["Steps"]]
    assert outcome.succeeded, failed
    assert outcome.record["LocalOverrides"]["ContainerPython"].endswith("training toolkit)")
    for name in ("PrepareData", "EvaluateModel", "CompareWithDeployed", "DeployEndpoint"):
        assert outcome.step(name)["Status"] == "Succeeded", name


def test_trials_and_train_model_start_through_the_toolkit_and_install_nothing(execution):
    outcome, _, _ = execution
    train = _log(outcome, "TrainModel")
    assert TOOLKIT in train
    assert "Invoking TorchDistributed" in train  # sagemaker_torch_distributed_enabled
    assert "torchrun" in train
    trial_logs = sorted(Path(outcome.step("TrainModel")["LogPath"]).parent.glob("Tune*-0*.log"))
    assert trial_logs, "no trial log"
    for text in [train] + [p.read_text(errors="replace") for p in trial_logs]:
        assert TOOLKIT in text
        assert "Installing dependencies from requirements.txt" not in text
        assert "InstallRequirementsError" not in text


def test_the_image_packages_are_left_as_they_were(execution, container_python):
    _, _, before = execution
    assert freeze(container_python) == before


def test_train_model_saved_the_rules_tensors_from_the_bundled_smdebug(execution):
    outcome, store, _ = execution
    properties = outcome.step("TrainModel")["Properties"]
    tensors = store.path(properties["DebugHookConfig"]["S3OutputPath"])
    events = list(tensors.rglob("*.tfevents"))
    assert events, f"no tensors under {tensors}"
    statuses = {
        s["RuleConfigurationName"]: s["RuleEvaluationStatus"]
        for s in properties["DebugRuleEvaluationStatuses"]
    }
    assert "Error" not in statuses.values(), statuses


def test_the_processing_jobs_ran_with_the_container_python(execution, container_python):
    outcome, _, _ = execution
    for name in ("PrepareData", "EvaluateModel", "CompareWithDeployed"):
        command = _log(outcome, name).splitlines()[0]
        assert command.startswith(f"$ {container_python} "), (name, command)


# ------------------------------------------------------------------ one job at a time


def _train_model_job(execution, container_python, tmp_path, env=None, **hyperparameters):
    """TrainModel's resolved arguments from the execution, with `hyperparameters` changed,
    run as a new job under the toolkit (`env` added to its environment); (job, result or
    the JobFailed)."""
    outcome, store, _ = execution
    properties = outcome.step("TrainModel")["Properties"]
    arguments = {
        key: value
        for key, value in properties.items()
        if key
        in (
            "AlgorithmSpecification",
            "HyperParameters",
            "InputDataConfig",
            "OutputDataConfig",
            "ResourceConfig",
            "StoppingCondition",
            "DebugHookConfig",
            "Environment",
        )
    }
    arguments["HyperParameters"] = {
        **arguments["HyperParameters"],
        **{key: json.dumps(str(value)) for key, value in hyperparameters.items()},
    }
    name = "TrainModel-" + "-".join(f"{k}{v}" for k, v in hyperparameters.items()).replace("_", "")
    job = Job(
        store=store,
        name=name,
        root=tmp_path / "job",
        log_path=tmp_path / "job.log",
        label=name,
        supervisor=Supervisor(),
        env={**OFFLINE, **(env or {})},
        container=ContainerPython.probe(container_python),
    )
    try:
        return job, run_training(job, arguments)
    except JobFailed as err:
        return job, err


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_train_model_with_the_hook_under_forced_autocast(
    execution, container_python, tmp_path, amp
):
    job, result = _train_model_job(execution, container_python, tmp_path, amp=amp)
    log = job.log_path.read_text(errors="replace")
    assert not isinstance(result, JobFailed), f"{result}\n{log[-3000:]}"
    assert f"autocast {'bfloat16' if amp == 'bf16' else 'float16'}" in log
    assert list((job.opt_ml / "output" / "tensors").rglob("*.tfevents"))


def test_train_model_as_two_torchrun_processes(execution, container_python, tmp_path):
    # A CPU has no GPUs to count: the toolkit's processes-per-host setting stands in for 2.
    job, result = _train_model_job(
        execution, container_python, tmp_path, sagemaker_mpi_num_of_processes_per_host=2
    )
    log = job.log_path.read_text(errors="replace")
    assert not isinstance(result, JobFailed), f"{result}\n{log[-3000:]}"
    assert "--nproc_per_node 2" in log
    assert "2 process(es)" in log, log[-3000:]
    model_uri = result.properties["ModelArtifacts"]["S3ModelArtifacts"]
    with tarfile.open(job.store.path(model_uri)) as tar:
        assert {"model.pth", "class_names.json"} <= set(tar.getnames())


# ------------------------------------------------------------ the trained model, served


def test_the_trained_model_is_served_by_the_inference_image_stack(execution, tmp_path):
    """TrainModel's model.tar.gz (written by the training image's torch 2.13) served by
    TorchServe and sagemaker-pytorch-inference in the inference image's venv (torch 2.6),
    with the container environment of a --serving torchserve definition."""
    from helpers.serving_stack import TorchServe, extract, java_version

    python = python_of(INFERENCE)
    version = java_version()
    if version is None or version < 11:
        pytest.skip(f"TorchServe's frontend needs Java 11 or later (found: {version})")
    outcome, store, _ = execution
    container = outcome.step("CreateModel-CreateModel")["Properties"]["PrimaryContainer"]
    model_dir = extract(store.path(container["ModelDataUrl"]), tmp_path / "opt-ml-model")
    class_names = json.loads((model_dir / "class_names.json").read_text())
    image = next((Path(outcome.record["LocalOverrides"]["Input"]) / "test").rglob("*.jpg"))
    # The environment a --serving torchserve definition deploys it with.
    server = TorchServe(model_dir, torchserve_environment(), tmp_path, python=python)
    try:
        reply = server.invoke(
            image.read_bytes(), {"Content-Type": "image/jpeg", "Accept": "application/json"}
        )
    finally:
        server.stop()
    assert reply.status == 200, reply
    (predictions,) = json.loads(reply.body)["predictions"]
    assert {p["label"] for p in predictions} <= set(class_names)
    assert sum(p["probability"] for p in predictions) <= 1.0 + 1e-6


# ------------------------------------------------------------------------ MLflow tracking


def test_the_jobs_log_to_the_store_s_mlflow_with_the_image_s_mlflow(execution, container_python):
    from mlflow.tracking import MlflowClient

    outcome, store, before = execution
    assert before["mlflow"] == "3.15.1" and before["sagemaker-mlflow"] == "0.2.0"
    uri = outcome.record["LocalOverrides"]["Tracking"]
    assert uri == f"sqlite:///{store.root.absolute() / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(PipelineConfig().pipeline_name)
    runs = client.search_runs([experiment.experiment_id])
    by_role = {}
    for found in runs:
        by_role.setdefault(found.data.tags["dogbreed.role"], []).append(found)
    (parent,) = by_role["execution"]
    assert parent.info.run_name == outcome.record["PipelineExecutionId"]
    (tuning,) = by_role["tuning"]
    assert len(by_role["trial"]) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in by_role["trial"]} == {tuning.info.run_id}
    (training,) = by_role["training"]
    (evaluation,) = by_role["evaluation"]
    for child in (tuning, training, evaluation):
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    # Under torchrun rank 0 alone logs: one point an epoch.
    assert [m.step for m in client.get_metric_history(training.info.run_id, "valid_loss")] == [1]
    assert "test_accuracy" in evaluation.data.metrics
    artifacts = {a.path for a in client.list_artifacts(evaluation.info.run_id)}
    assert "confusion_matrix.png" in artifacts


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:9",
        # sagemaker-mlflow's scheme, with no credentials to sign with.
        "arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/none",
    ],
)
def test_a_tracking_server_that_cannot_be_reached_costs_one_warning_line(
    execution, container_python, tmp_path, uri
):
    env = {
        "MLFLOW_TRACKING_URI": uri,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }
    job, result = _train_model_job(execution, container_python, tmp_path, env=env, epochs=1)
    log = job.log_path.read_text(errors="replace")
    assert not isinstance(result, JobFailed), f"{result}\n{log[-3000:]}"
    warnings = [line for line in log.splitlines() if "MLflow tracking at" in line]
    assert len(warnings) == 1, warnings
    assert "the job goes on without it" in warnings[0]
