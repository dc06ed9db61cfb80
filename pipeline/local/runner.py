"""Execute a pipeline definition on this machine: check, prepare, schedule, record.

`run(definition, options)` checks the whole definition first (plan.py), prepares the
store (prepare.py: parameters, code bundle, `--input` data), then hands the steps to the
scheduler (scheduler.py: DAG order, conditions, `--workers`), which runs each through its
handler (step_handlers.py) and keeps the execution record (execution_record.py) up to date.
The first failure (a job, a FailStep, an expression that cannot be resolved) stops new
steps from starting; the execution ends Failed with that step's reason. `resume` runs a
failed execution again from its record.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from dogbreed_jobs.contract import WEIGHTS_PARAMETER
from pipeline import parameter_values, weights
from pipeline.config import ENDPOINT_NAME_RE, alarm_names
from pipeline.local import alarms, records, tracking
from pipeline.local.cache import StepCache
from pipeline.local.container import ContainerPython
from pipeline.local.execution_record import ExecutionRecord, find_execution
from pipeline.local.options import Options
from pipeline.local.plan import DefinitionError, Node, check_definition
from pipeline.local.prepare import place_code, place_input, place_weights
from pipeline.local.sagemaker_api import Server as SageMakerApi
from pipeline.local.scheduler import schedule
from pipeline.local.step_handlers import Steps
from pipeline.local.store import Store
from pipeline.local.supervisor import Supervisor

log = logging.getLogger("pipeline.local")

__all__ = ["DefinitionError", "Options", "Outcome", "resume", "run"]


@dataclass
class Outcome:
    record: dict
    path: Path

    @property
    def succeeded(self) -> bool:
        return self.record["Status"] == "Succeeded"

    def step(self, name: str) -> dict | None:
        return next((s for s in self.record["Steps"] if s["StepName"] == name), None)


class Execution:
    def __init__(
        self,
        definition: dict,
        options: Options,
        nodes: dict[str, Node],
        resumed: dict | None = None,
    ):
        self.definition = definition
        self.options = options
        self.nodes = nodes
        self.store = Store(options.store)
        self.resumed = resumed
        self.record = ExecutionRecord(self.store, options.pipeline_name, nodes, resumed)
        self.clock = time.monotonic()
        self.parameters: dict = {}
        self.job_env: dict[str, str | None] = {}
        self.container: ContainerPython = ContainerPython.host()
        # One per execution: a stop ends this execution's jobs, and a later one starts afresh.
        self.supervisor = Supervisor()
        self.tracking: tracking.StoreInit | None = None
        self.cache = StepCache(
            self.store,
            options.pipeline_name,
            options.use_cache,
            {
                "max_epochs": options.max_epochs,
                "max_trials": options.max_trials,
                "seed": options.seed,
            },
        )

    def _prepare(self) -> dict:
        """Parameters, code and data in place; the LocalOverrides of the record."""
        options = self.options
        if self.resumed is not None:
            self.parameters = self.resumed.get("Parameters") or {}
        else:
            self.parameters = parameter_values.resolve(
                self.definition, options.parameters, options.pipeline_name
            )
        overrides = {
            "Store": str(self.store.root),
            "Seed": options.seed,
            "Cache": options.use_cache,
            "Workers": options.workers,
            "TuningStrategy": "seeded random search (in place of the definition's Strategy)",
        }
        if options.max_trials is not None:
            overrides["MaxTrials"] = options.max_trials
        if options.max_epochs is not None:
            overrides["MaxEpochs"] = options.max_epochs
        if options.container_python is not None:
            try:
                self.container = ContainerPython.probe(options.container_python)
            except ValueError as err:
                raise DefinitionError(f"--container-python: {err}") from None
            overrides["ContainerPython"] = self.container.describe()
        place_code(self.store, self.definition)
        data_url = self.parameters.get("InputDataUrl")
        if options.input is not None:
            if not isinstance(data_url, str):
                raise DefinitionError("--input needs an InputDataUrl parameter in the definition")
            overrides["Input"] = str(Path(options.input).absolute())
            place_input(self.store, options.input, data_url)
        if isinstance(data_url, str) and data_url.startswith("s3://"):
            if not self.store.exists(data_url):
                raise DefinitionError(
                    f"no input data at {data_url} (store path {self.store.path(data_url)}): pass "
                    "--input DIR_OR_ZIP (`dogbreed-pipeline sample-data` writes a demo dataset)"
                )
        if options.weights is not None:
            overrides["Weights"] = str(Path(options.weights).absolute())
            place_weights(self.store, options.weights, self.parameters[WEIGHTS_PARAMETER])
        self._check_weights_can_be_had()
        # MLflow: the jobs log to the store's database (or $MLFLOW_TRACKING_URI).
        overrides["Tracking"] = tracking.shown_uri(self.store)
        self.job_env.update(tracking.base_environment(self.store))
        self.tracking = tracking.StoreInit(self.store)
        if options.workers > 1 and "OMP_NUM_THREADS" not in os.environ:
            # Parallel jobs share the cores instead of each spinning up a thread per core.
            self.job_env["OMP_NUM_THREADS"] = str(max(1, records.cpu_count() // options.workers))
        return overrides

    def _check_weights_can_be_had(self) -> None:
        """Pretrained without a weights file: the jobs download the weights, so a machine that
        cannot (offline, a proxy refusing) stops here, not in every tuning trial in turn."""
        if not parameter_values.weights_missing(self.definition, self.parameters):
            return
        problem = weights.download_problem()
        if problem:
            raise DefinitionError(
                f"Pretrained=true, but the training jobs cannot download ImageNet weights "
                f"({problem}): {parameter_values.WEIGHTS_WAYS_OUT}"
            )

    def run(self) -> Outcome:
        overrides = self._prepare()
        if self.resumed is not None:
            reused = self.record.reopen(overrides)
            log.info(
                "resuming %s: reusing %s",
                self.record.id,
                ", ".join(reused) or "no step (none had finished)",
            )
        else:
            self.record.open(self.definition, self.parameters, overrides)
        log.info("execution %s (record %s)", self.record.id, self.record.path)
        steps = Steps(
            self.record,
            self.options,
            self.store,
            self.cache,
            self.parameters,
            self.job_env,
            self.container,
            self.supervisor,
            self.tracking,
        )
        endpoint = self.parameters.get("EndpointName")
        if isinstance(endpoint, str) and ENDPOINT_NAME_RE.match(endpoint):
            # The local stand-in for infra/'s auto-rollback alarms (pipeline/local/alarms.py).
            alarms.ensure(self.store, endpoint, alarm_names(endpoint))
        try:
            # Jobs that ask SageMaker (and CloudWatch, Application Auto Scaling) about the
            # deployment get the store's answers.
            with SageMakerApi(self.store) as api:
                self.job_env.update(api.environment())
                failure = schedule(
                    self.nodes,
                    self.record,
                    max(1, self.options.workers),
                    steps.execute,
                    self.supervisor.stop_all,
                )
        except KeyboardInterrupt:
            # Again: a second Ctrl-C may have cut short the wait for the jobs to stop.
            self.supervisor.stop_all()
            self._end("Stopped", "interrupted")
            raise
        self._end("Failed" if failure else "Succeeded", failure)
        return Outcome(self.record.record, self.record.path)

    def _end(self, status: str, reason: str | None) -> None:
        self.record.end(status, reason)
        seconds = time.monotonic() - self.clock
        log.info("execution %s %s in %.1fs", self.record.id, status, seconds)


def run(definition: dict, options: Options) -> Outcome:
    """Check, then execute `definition`; the outcome (its record says Succeeded or Failed).

    DefinitionError (or pipeline.errors.UsageError for a bad --param) before anything runs.
    """
    nodes = check_definition(definition)
    if options.workers < 1:
        raise DefinitionError("--workers must be at least 1")
    return Execution(definition, options, nodes).run()


def resume(execution_id: str | None, options: Options) -> Outcome:
    """Run a failed (or stopped, or killed) execution again from where it stopped.

    The saved definition and parameters, the same execution id; steps that Succeeded or
    were Cached keep their recorded properties and do not run. `--param` may only repeat
    the recorded values; `--seed`, `--max-trials` and `--max-epochs` come from the record,
    because the reused steps were computed with them.
    """
    store = Store(options.store)
    record = find_execution(store, execution_id)
    execution_id = record.get("PipelineExecutionId")
    if record.get("Status") == "Succeeded":
        raise DefinitionError(
            f"--resume: execution {execution_id} already succeeded; nothing to resume"
        )
    if options.input is not None:
        raise DefinitionError(
            "--resume keeps the execution's input data: --input cannot change it midway"
        )
    saved = store.executions / execution_id / "definition.json"
    try:
        definition = json.loads(saved.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DefinitionError(
            f"--resume: cannot read the definition of {execution_id} ({saved}): {err}"
        ) from None
    nodes = check_definition(definition)
    name = record.get("PipelineName") or options.pipeline_name
    recorded = record.get("Parameters") or {}
    given = parameter_values.resolve(definition, options.parameters, name)
    for key, _ in options.parameters:
        if given.get(key) != recorded.get(key):
            raise DefinitionError(
                f"--resume: --param {key}={given.get(key)!r} differs from the execution's "
                f"{key}={recorded.get(key)!r}; a resumed execution keeps its parameters "
                "(start a new run to change them)"
            )
    overrides = record.get("LocalOverrides") or {}
    options = Options(
        store=options.store,
        parameters=[],
        input=None,
        max_trials=overrides.get("MaxTrials"),
        max_epochs=overrides.get("MaxEpochs"),
        seed=overrides.get("Seed", 0),
        use_cache=options.use_cache,
        workers=options.workers,
        pipeline_name=name,
    )
    if options.workers < 1:
        raise DefinitionError("--workers must be at least 1")
    execution = Execution(definition, options, nodes, resumed=record)
    try:
        return execution.run()
    except DefinitionError as err:
        # The code bundle or the input data the saved definition needs is gone.
        raise DefinitionError(f"cannot resume {execution_id}: {err}") from None
