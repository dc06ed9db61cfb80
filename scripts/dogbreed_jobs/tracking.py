"""MLflow tracking of the jobs that learn or judge: on when $MLFLOW_TRACKING_URI is set.

Runs are grouped as AWS's pipeline samples group them: one experiment per pipeline
($MLFLOW_EXPERIMENT_NAME), one parent run per execution (named and tagged with its id), one
run per job step nested under it, and the tuning trials nested under one run of the tuning
step. The jobs find or create the parent and tuning runs themselves, so no step has to run
first; parallel trials may race to create one, and then the earliest created is kept and the
others are deleted. contract.py names the environment (TRACKING_URI_ENV and after).

Tracking never breaks a job: the first MLflow error prints one warning line and turns
tracking off for the rest of the job. MLflow's HTTP retries and timeouts are bounded
(HTTP_DEFAULTS, unless the environment sets them), so an unreachable server costs seconds.
mlflow is imported only when a URI is set; an `arn:` URI needs sagemaker-mlflow, which the
training image has.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from dogbreed_jobs import contract

# MLflow's own defaults (7 retries with backoff, 120 s per request) would hold a job for
# minutes on every call to a server that cannot be reached.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
DEFAULT_EXPERIMENT = "dogbreed-pipeline"
# Tags (MLflow's parent tag links the nesting, which its UI shows as a tree).
PARENT_TAG = "mlflow.parentRunId"
EXECUTION_TAG = "dogbreed.execution_id"
ROLE_TAG = "dogbreed.role"
STEP_TAG = "dogbreed.step"
TRAINING, EVALUATION = "training", "evaluation"
# train.py's history fields logged per epoch as they are.
EPOCH_METRICS = ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "learning_rate")
CURVES_FILE = "training_curves.png"
# On SageMaker a processing job learns its name and ARN from this file (run-local sets
# PROCESSING_JOB_NAME); training jobs get TRAINING_JOB_NAME and TRAINING_JOB_ARN.
PROCESSING_CONFIG = Path("/opt/ml/config/processingjobconfig.json")
# Whatever a URI's user-info or a query string holds never reaches a log.
_SECRETS = re.compile(r"(?<=://)[^/@\s]+@")


def _redact(text: str) -> str:
    return _SECRETS.sub("***@", text)


def describe(uri: str) -> str:
    """A tracking URI as logs may show it: no user-info, query or path of an HTTP server."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
    return _redact(uri.split("?", 1)[0])


def _warn(uri: str, error: BaseException, what: str = "tracking") -> None:
    message = " ".join(str(error).split())[:300]
    print(
        f"WARNING: MLflow {what} at {describe(uri)} is unavailable "
        f"({type(error).__name__}: {_redact(message)}); the job goes on without it",
        file=sys.stderr,
        flush=True,
    )


def _job_identity() -> dict[str, str]:
    """The SageMaker job's name and ARN, as the platform tells the container."""
    name = os.environ.get("TRAINING_JOB_NAME") or os.environ.get("PROCESSING_JOB_NAME")
    arn = os.environ.get("TRAINING_JOB_ARN")
    if not name and PROCESSING_CONFIG.is_file():
        try:
            config = json.loads(PROCESSING_CONFIG.read_text())
            name, arn = config.get("ProcessingJobName"), config.get("ProcessingJobArn")
        except (OSError, ValueError):
            pass
    return {"sagemaker.job_name": name or "", "sagemaker.job_arn": arn or ""}


class Run:
    """One job's run, or none (tracking off, or failed): every method is safe to call."""

    def __init__(self, client=None, run_id: str = "", uri: str = "", groups: tuple = ()):
        self._client = client
        self.run_id = run_id
        self._uri = uri
        self._groups = groups  # the execution's and the tuning step's runs above this one
        self._artifacts = True

    @property
    def active(self) -> bool:
        return self._client is not None

    def _call(self, method: str, *args, **kwargs):
        if self._client is None:
            return None
        try:
            return getattr(self._client, method)(*args, **kwargs)
        except Exception as error:
            _warn(self._uri, error)
            self._client = None
            return None

    def log_params(self, params: dict) -> None:
        if not (self.active and params):
            return
        from mlflow.entities import Param

        batch = [Param(key, str(value)[:6000]) for key, value in params.items()]
        self._call("log_batch", self.run_id, params=batch)

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        if not (self.active and metrics):
            return
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(key, float(value), stamp, step) for key, value in metrics.items()]
        self._call("log_batch", self.run_id, metrics=batch)

    def log_artifact(self, path: Path | str, folder: str | None = None) -> None:
        # The client writes artifacts to the server's store itself (SageMaker's: its S3
        # bucket, which the role may not reach): a refused upload stops the artifacts only.
        if not (self.active and self._artifacts and Path(path).is_file()):
            return
        try:
            self._client.log_artifact(self.run_id, str(path), folder)
        except Exception as error:
            _warn(self._uri, error, "artifact store of the server")
            self._artifacts = False

    def log_epoch(self, entry: dict, timing: dict | None) -> None:
        """One epoch of train.py's history (and its TIMING record), at step = the epoch."""
        if not self.active:
            return
        metrics = {key: entry[key] for key in EPOCH_METRICS}
        metrics["epoch_seconds"] = entry["seconds"]
        metrics["train_images_per_second"] = entry["train_images_per_second"]
        if timing and timing.get("epoch") == entry["epoch"]:
            busy = timing["data_wait_seconds"] + timing["compute_seconds"]
            metrics["data_wait_share"] = timing["data_wait_seconds"] / busy if busy else 0.0
        self.log_metrics(metrics, step=entry["epoch"])

    def log_training_outputs(self, output_dir: Path | str) -> None:
        """history.json, timing.json and the training curves drawn from the history."""
        history = Path(output_dir) / contract.HISTORY_FILE
        self.log_artifact(history)
        self.log_artifact(Path(output_dir) / contract.TIMING_FILE)
        if not (self.active and history.is_file()):
            return
        epochs = json.loads(history.read_text())["epochs"]
        if epochs:
            with tempfile.TemporaryDirectory(prefix="curves-") as scratch:
                path = Path(scratch) / CURVES_FILE
                curves_figure(epochs).savefig(path, dpi=100)
                self.log_artifact(path)

    def log_evaluation(self, report: dict, output_dir: Path | str) -> None:
        """evaluate.py's figures as metrics, evaluation.json and the confusion matrix."""
        summary = report["multiclass_classification_metrics"]
        details = report["details"]
        self.log_metrics(
            {
                "test_accuracy": summary["accuracy"]["value"],
                "test_top5_accuracy": details["top5_accuracy"],
                "test_macro_f1": details["macro_f1"],
                "test_weighted_f1": summary["weighted_f1"]["value"],
            }
        )
        champion = (report.get("champion") or {}).get("metrics")
        if champion:
            # The serving model's figures on the same split, beside the new model's.
            self.log_metrics({f"champion_test_{name}": value for name, value in champion.items()})
        self.log_artifact(Path(output_dir) / contract.EVALUATION_FILE)
        self.log_artifact(Path(output_dir) / contract.CONFUSION_MATRIX_FILE)

    def end(self, succeeded: bool = True) -> None:
        status = "FINISHED" if succeeded else "FAILED"
        self._call("set_terminated", self.run_id, status)
        # A group run ends with the latest of its runs (it has no job of its own to end it).
        for group in self._groups:
            self._call("set_terminated", group, "FINISHED")
        self._client = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self.active:
            self.end(succeeded=kind is None)


def start(role: str, params: dict | None = None) -> Run:
    """This job's run (`role`: TRAINING or EVALUATION), or an inactive one."""
    uri = os.environ.get(contract.TRACKING_URI_ENV, "")
    if not uri:
        return Run()
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        run = _open(uri, role)
    except Exception as error:
        _warn(uri, error)
        return Run()
    run.log_params(params or {})
    return run


def quiet() -> None:
    """Migration chatter from a fresh SQLite store and urllib3's line per retry would drown
    the one warning line this module promises. After importing mlflow, which sets its own
    logger's level."""
    for noisy in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _open(uri: str, role: str) -> Run:
    from mlflow.tracking import MlflowClient

    quiet()
    client = MlflowClient(tracking_uri=uri)
    experiment = os.environ.get(contract.EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    experiment_id = _experiment(client, experiment)
    execution = os.environ.get(contract.EXECUTION_ID_ENV, "")
    step = os.environ.get(contract.STEP_NAME_ENV, "")
    tuning = os.environ.get(contract.STEP_TYPE_ENV) == contract.TUNING_STEP_TYPE
    role = "trial" if tuning and role == TRAINING else role
    identity = _job_identity()
    groups = []
    if execution:
        groups.append(_group_run(client, experiment_id, execution, "execution", execution))
        if tuning:
            groups.append(_group_run(client, experiment_id, execution, "tuning", step, groups[-1]))
    tags = {
        ROLE_TAG: role,
        STEP_TAG: step,
        EXECUTION_TAG: execution,
        PARENT_TAG: groups[-1] if groups else "",
        "dogbreed.code_bundle": os.environ.get(contract.CODE_BUNDLE_ENV, ""),
        "dogbreed.image": os.environ.get(contract.IMAGE_ENV, ""),
        **identity,
    }
    name = (identity["sagemaker.job_name"] if tuning else step) or role
    run = client.create_run(
        experiment_id, run_name=name, tags={key: value for key, value in tags.items() if value}
    )
    for group in groups:
        client.update_run(group, status="RUNNING")
    return Run(client, run.info.run_id, uri, tuple(reversed(groups)))


def _experiment(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = os.environ.get(contract.ARTIFACT_ROOT_ENV)
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(
            name,
            artifact_location=Path(root).resolve().as_uri() if root else None,
            # MLflow 3's UI then opens it on its training runs, not its GenAI views.
            tags={"mlflow.experimentKind": "custom_model_development"},
        )
    except MlflowException:
        # Another job of the execution created it first.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _group_run(client, experiment_id: str, execution: str, role: str, name: str, parent=""):
    """The execution's (or its tuning step's) run: found by its tags, else created."""
    query = f"tags.`{EXECUTION_TAG}` = '{execution}' and tags.`{ROLE_TAG}` = '{role}'"

    def earliest() -> str | None:
        runs = client.search_runs([experiment_id], query, max_results=50)
        first = min(runs, key=lambda r: (r.info.start_time, r.info.run_id), default=None)
        return first.info.run_id if first else None

    found = earliest()
    if found:
        return found
    tags = {EXECUTION_TAG: execution, ROLE_TAG: role, **({PARENT_TAG: parent} if parent else {})}
    mine = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    winner = earliest() or mine
    if winner != mine:
        client.delete_run(mine)
    return winner


def evaluation_block(run: Run) -> dict:
    """evaluation.json's MLflow block when tracking is asked for (the run ids, or
    RUN_ID_UNAVAILABLE), else nothing: RegisterModel reads the TrainModel run's id from it."""
    if not os.environ.get(contract.TRACKING_URI_ENV):
        return {}
    return {
        contract.EVALUATION_MLFLOW_KEY: {
            "run_id": run.run_id or contract.RUN_ID_UNAVAILABLE,
            contract.TRAINING_RUN_ID_FIELD: _training_run_id(run),
        }
    }


def _training_run_id(run: Run) -> str:
    """The id of this execution's TrainModel run."""
    execution = os.environ.get(contract.EXECUTION_ID_ENV, "")
    if not run.active or not execution:
        return contract.RUN_ID_UNAVAILABLE
    here = run._call("get_run", run.run_id)
    if here is None:
        return contract.RUN_ID_UNAVAILABLE
    query = f"tags.`{EXECUTION_TAG}` = '{execution}' and tags.`{ROLE_TAG}` = '{TRAINING}'"
    runs = run._call("search_runs", [here.info.experiment_id], query, max_results=5) or []
    latest = max(runs, key=lambda r: r.info.start_time, default=None)
    return latest.info.run_id if latest else contract.RUN_ID_UNAVAILABLE


def curves_figure(history: list[dict]):
    """Loss and accuracy per epoch, training and validation: the run's training curves."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    epochs = [entry["epoch"] for entry in history]
    for axes, what in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for split in ("train", "valid"):
            axes.plot(epochs, [e[f"{split}_{what}"] for e in history], marker="o", label=split)
        axes.set_xlabel("epoch")
        axes.set_ylabel(what)
        axes.legend()
    return figure
