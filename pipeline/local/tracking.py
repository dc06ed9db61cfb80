"""run-local's MLflow: where the jobs log, and the environment that tells them.

By default a SQLite store and an artifact folder in `<store>/mlflow/`; the standard
MLFLOW_TRACKING_URI, when set, is used instead (the jobs inherit it). A definition exported
with `--mlflow-tracking-arn` already gives its jobs the variables (pipeline.tracking), and
those win; for any other, each job step gets the same variables with this execution's
values, outside the step's arguments, so the step cache keys stay as they are.
"""

from __future__ import annotations

import logging
import os
import shlex
import threading

from dogbreed_jobs import contract
from dogbreed_jobs.tracking import describe
from pipeline.local.plan import Node
from pipeline.local.prepare import code_bundle
from pipeline.local.store import Store
from pipeline.tracking import job_environment

log = logging.getLogger("pipeline.local")

FOLDER = "mlflow"
DATABASE = "mlflow.db"
ARTIFACTS = "artifacts"


def tracking_uri(store: Store) -> str:
    """$MLFLOW_TRACKING_URI, else the store's SQLite database."""
    given = os.environ.get(contract.TRACKING_URI_ENV)
    if given:
        return given
    return f"sqlite:///{(store.root / FOLDER / DATABASE).absolute()}"


def base_environment(store: Store) -> dict[str, str]:
    """What every job of the execution gets: the URI and, for the store's own database,
    where the experiment it creates keeps its artifacts."""
    if os.environ.get(contract.TRACKING_URI_ENV):
        return {}
    return {
        contract.TRACKING_URI_ENV: tracking_uri(store),
        contract.ARTIFACT_ROOT_ENV: str((store.root / FOLDER / ARTIFACTS).absolute()),
    }


def shown_uri(store: Store) -> str:
    """The tracking URI as the record and the summary show it (credentials left out)."""
    return describe(tracking_uri(store))


def opening(uri: str) -> str:
    """Where to look at the runs: the `mlflow ui` command of a local store, else the URI."""
    if uri.startswith(("sqlite:", "file:", "/")):
        return f"mlflow ui --backend-store-uri {shlex.quote(uri)}"
    return uri


def _image(node: Node, arguments: dict) -> str:
    if node.type == "Processing":
        return (arguments.get("AppSpecification") or {}).get("ImageUri", "")
    definition = arguments.get("TrainingJobDefinition") or arguments
    return (definition.get("AlgorithmSpecification") or {}).get("TrainingImage", "")


def step_environment(node: Node, arguments: dict, execution_id: str, pipeline_name: str) -> dict:
    """One job step's tracking variables; the step's own Environment overrides them."""
    env = job_environment(
        uri=None,  # the base environment's, or the user's $MLFLOW_TRACKING_URI
        experiment=pipeline_name,
        execution_id=execution_id,
        step_name=node.name,
        code_bundle=code_bundle(arguments),
        image=_image(node, arguments),
        tuning=node.type == "Tuning",
    )
    return {key: value for key, value in env.items() if value is not None}


class StoreInit:
    """Creates a SQLite tracking database (MLflow's schema migrations, some seconds) in the
    background while the first steps run: parallel trials racing to migrate a new database
    fail with `duplicate column`. Other stores are the server's business."""

    def __init__(self, store: Store):
        self._thread = None
        uri = tracking_uri(store)
        if not uri.startswith("sqlite:"):
            return
        if not os.environ.get(contract.TRACKING_URI_ENV):
            (store.root / FOLDER).mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._create, args=(uri,), daemon=True)
        self._thread.start()

    @staticmethod
    def _create(uri: str) -> None:
        try:
            from mlflow.tracking import MlflowClient

            from dogbreed_jobs.tracking import quiet

            quiet()
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception as err:  # the jobs warn again and train on: never fatal
            log.warning("MLflow store %s: %s", uri, " ".join(str(err).split())[:300])

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
