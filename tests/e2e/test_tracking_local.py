"""MLflow tracking under run-local, read back with MlflowClient from real SQLite stores.

Two runs on one store: the default definition with $MLFLOW_TRACKING_URI set (run-local
gives the jobs the tracking variables), then the definition exported with
`--mlflow-tracking-arn`, its MlflowTrackingUri parameter pointed at another database (the
definition's own variables, resolved by the runner as on SageMaker). Last, the jobs' side
alone: two trials of one execution in one store.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.datagen import make_imagefolder
from mlflow.tracking import MlflowClient
from test_local_runner import OVERRIDES, quick, run_cli

from dogbreed_jobs import contract, tracking
from pipeline.config import PipelineConfig
from pipeline.definition import definition_json
from pipeline.local import registry
from pipeline.local.store import Store

ARN = f"arn:aws:sagemaker:us-east-1:{'1' * 12}:mlflow-tracking-server/dogbreed"
EXPERIMENT = PipelineConfig().pipeline_name
EPOCHS = 2


class Tracked:
    def __init__(self, root: Path):
        self.root = root
        self.store = root / "store"

    def run(self, definition: dict, label: str, *args: str, env: dict | None = None):
        path = self.root / f"{label}.json"
        path.write_text(json.dumps(definition))
        result = run_cli(
            "--definition", str(path),
            "--store", str(self.store),
            "--max-trials", "2",
            "--max-epochs", str(EPOCHS),
            "--workers", "2",
            *[item for override in OVERRIDES for item in ("--param", override)],
            "--param", "AccuracyThreshold=0",
            *args,
            env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        execution = result.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]
        record = self.store / "executions" / execution / "record.json"
        return result, json.loads(record.read_text())


def runs_of(uri: str) -> dict[str, list]:
    """The experiment's runs by their role tag."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    found: dict[str, list] = {}
    for run in client.search_runs([experiment.experiment_id], max_results=100):
        found.setdefault(run.data.tags["dogbreed.role"], []).append(run)
    return found


def parent(run) -> str:
    return run.data.tags.get("mlflow.parentRunId")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracked")
    data = make_imagefolder(root / "data", 3, {"train": 6, "valid": 3, "test": 3}, seed=3)
    runs = Tracked(root)
    default_uri = f"sqlite:///{root / 'default.db'}"
    env = {**os.environ, contract.TRACKING_URI_ENV: default_uri}
    runs.default = (default_uri, *runs.run(quick(json.loads(definition_json())), "default",
                                           "--input", str(data), env=env))  # fmt: skip
    arn_uri = f"sqlite:///{root / 'arn.db'}"
    env = {k: v for k, v in os.environ.items() if k != contract.TRACKING_URI_ENV}
    definition = quick(json.loads(definition_json(PipelineConfig(mlflow_tracking_arn=ARN))))
    runs.arn = (arn_uri, *runs.run(definition, "arn", "--param", f"MlflowTrackingUri={arn_uri}",
                                   env=env))  # fmt: skip
    return runs


def test_runs_group_under_the_execution_with_trials_under_the_tuning_run(tracked):
    uri, _, record = tracked.default
    runs = runs_of(uri)
    (execution,) = runs["execution"]
    assert execution.info.run_name == record["PipelineExecutionId"]
    assert execution.data.tags["dogbreed.execution_id"] == record["PipelineExecutionId"]
    (tuning,) = runs["tuning"]
    assert tuning.info.run_name == "TuneHyperparameters"
    assert parent(tuning) == execution.info.run_id
    trial_jobs = {t["TrainingJobName"] for s in record["Steps"] for t in s.get("Trials") or []}
    assert {run.info.run_name for run in runs["trial"]} == trial_jobs
    assert len(trial_jobs) == 2
    assert all(parent(run) == tuning.info.run_id for run in runs["trial"])
    (training,) = runs["training"]
    (evaluation,) = runs["evaluation"]
    assert [training.info.run_name, evaluation.info.run_name] == ["TrainModel", "EvaluateModel"]
    assert parent(training) == parent(evaluation) == execution.info.run_id
    for run in [*runs["trial"], training, evaluation]:
        assert run.info.status == "FINISHED"
        assert run.data.tags["sagemaker.job_name"]
        assert run.data.tags["dogbreed.code_bundle"]


def test_training_runs_hold_hyperparameters_data_sizes_and_per_epoch_metrics(tracked):
    uri, _, record = tracked.default
    client = MlflowClient(tracking_uri=uri)
    (training,) = runs_of(uri)["training"]
    params = training.data.params
    assert params["image_size"] == "32"
    assert params["pretrained"] == "False"
    assert (params["num_classes"], params["train_images"], params["valid_images"]) == (
        "3",
        "18",
        "9",
    )
    assert {"learning_rate", "batch_size", "epochs", "dropout"} <= set(params)
    for metric in (
        "train_loss",
        "train_accuracy",
        "valid_loss",
        "valid_accuracy",
        "learning_rate",
        "epoch_seconds",
        "data_wait_share",
    ):
        history = client.get_metric_history(training.info.run_id, metric)
        assert [point.step for point in history] == list(range(1, EPOCHS + 1)), metric
    artifacts = {item.path for item in client.list_artifacts(training.info.run_id)}
    assert {"history.json", "timing.json", "training_curves.png"} <= artifacts
    run_id = training.info.run_id
    history_file = client.download_artifacts(run_id, "history.json", str(tracked.root))
    epochs = json.loads(Path(history_file).read_text())["epochs"]
    valid = client.get_metric_history(training.info.run_id, "valid_accuracy")
    assert [point.value for point in valid] == [epoch["valid_accuracy"] for epoch in epochs]


def test_the_evaluation_run_holds_evaluation_json_s_figures_and_the_confusion_matrix(tracked):
    uri, _, record = tracked.default
    client = MlflowClient(tracking_uri=uri)
    (evaluation,) = runs_of(uri)["evaluation"]
    step = next(s for s in record["Steps"] if s["StepName"] == "EvaluateModel")
    output = step["Properties"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    report = json.loads((Store(tracked.store).path(output) / contract.EVALUATION_FILE).read_text())
    metrics = evaluation.data.metrics
    assert (
        metrics["test_accuracy"] == report["multiclass_classification_metrics"]["accuracy"]["value"]
    )
    assert metrics["test_macro_f1"] == report["details"]["macro_f1"]
    assert metrics["test_top5_accuracy"] == report["details"]["top5_accuracy"]
    artifacts = {item.path for item in client.list_artifacts(evaluation.info.run_id)}
    assert {contract.EVALUATION_FILE, contract.CONFUSION_MATRIX_FILE} <= artifacts
    (training,) = runs_of(uri)["training"]
    assert report[contract.EVALUATION_MLFLOW_KEY] == {
        "run_id": evaluation.info.run_id,
        contract.TRAINING_RUN_ID_FIELD: training.info.run_id,
    }


def test_the_run_ends_with_the_command_that_opens_its_runs(tracked):
    uri, result, _ = tracked.default
    assert f"mlflow ui --backend-store-uri {uri}" in result.stderr


def test_the_arn_definition_s_parameter_points_the_jobs_and_the_version_carries_the_run_id(
    tracked,
):
    uri, result, record = tracked.arn
    runs = runs_of(uri)
    (execution,) = runs["execution"]
    assert execution.info.run_name == record["PipelineExecutionId"]
    (training,) = runs["training"]
    assert parent(training) == execution.info.run_id
    assert runs["evaluation"]
    versions = registry.versions(tracked.store / "registry", "dogbreed-classifier")
    newest = versions[-1]
    assert newest["ExecutionArn"] == record["PipelineExecutionArn"]
    assert newest["CustomerMetadataProperties"] == {contract.RUN_ID_METADATA: training.info.run_id}
    # Without $MLFLOW_TRACKING_URI run-local made its own store's database too.
    assert (tracked.store / "mlflow" / "mlflow.db").is_file()


# ------------------------------------------------------------------------ the jobs' side


def test_parallel_trials_share_one_execution_run_and_one_tuning_run(monkeypatch, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for key, value in {
        contract.TRACKING_URI_ENV: uri,
        contract.EXPERIMENT_ENV: "dogbreed-test",
        contract.ARTIFACT_ROOT_ENV: str(tmp_path / "artifacts"),
        contract.EXECUTION_ID_ENV: "execution-1",
        contract.STEP_NAME_ENV: "TuneHyperparameters",
        contract.STEP_TYPE_ENV: contract.TUNING_STEP_TYPE,
    }.items():
        monkeypatch.setenv(key, value)
    trials = []
    for number in (1, 2):
        monkeypatch.setenv("TRAINING_JOB_NAME", f"trial-00{number}")
        trials.append(tracking.start(tracking.TRAINING, {"learning_rate": 0.01 * number}))
    for trial in trials:
        trial.end()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("dogbreed-test")
    assert experiment.artifact_location == (tmp_path / "artifacts").as_uri()
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"execution-1", "TuneHyperparameters", "trial-001", "trial-002"}
    tuning_id = runs["TuneHyperparameters"].info.run_id
    assert runs["TuneHyperparameters"].data.tags[tracking.PARENT_TAG] == (
        runs["execution-1"].info.run_id
    )
    for name in ("trial-001", "trial-002"):
        assert runs[name].data.tags[tracking.PARENT_TAG] == tuning_id
        assert runs[name].data.tags[tracking.ROLE_TAG] == "trial"
        assert runs[name].info.status == "FINISHED"
    assert runs["trial-002"].data.params["learning_rate"] == "0.02"
    assert runs["execution-1"].info.status == "FINISHED"
