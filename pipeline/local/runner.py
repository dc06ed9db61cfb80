"""Execute a pipeline definition on this machine: DAG order, conditions, caching, the record.

`run(definition, options)` checks the whole definition first (plan.py), prepares the
store (prepare.py: parameters, code bundle, `--input` data), then starts each step once its
dependencies are done: `Get` references to other steps and `DependsOn` order them, the
steps of a condition's branches wait for the condition, and the branch not taken is
recorded as Skipped, with everything that depends on it. Up to `--workers` steps run at
once. The first failure (a job, a FailStep, an expression that cannot be resolved) stops
new steps from starting; the execution ends Failed with that step's reason.

The execution record (`<store>/executions/<id>/record.json`, docs/local-runner.md) is
rewritten after every change, so it shows progress while the run goes on and holds every
finished step's properties for a later `--resume`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pipeline import parameter_values
from pipeline.config import LOCAL_STORE, PipelineConfig
from pipeline.local import endpoints, records, registry
from pipeline.local import expressions as ex
from pipeline.local import properties as step_properties
from pipeline.local.cache import StepCache
from pipeline.local.container import ContainerPython, Job
from pipeline.local.plan import DefinitionError, Node, check_definition
from pipeline.local.prepare import place_code, place_input
from pipeline.local.processing_job import run_processing
from pipeline.local.records import DONE
from pipeline.local.sagemaker_api import Server as SageMakerApi
from pipeline.local.store import Store, StoreError, join_uri
from pipeline.local.supervisor import JobFailed, Supervisor
from pipeline.local.training_job import clamp_epochs, run_training
from pipeline.local.tuning import TuningError, TuningRun, run_tuning

log = logging.getLogger("pipeline.local")

__all__ = ["DefinitionError", "Options", "Outcome", "resume", "run"]


@dataclass
class Options:
    store: Path = Path(LOCAL_STORE)
    parameters: list[tuple[str, str]] = field(default_factory=list)  # --param Name=Value
    input: Path | None = None
    max_trials: int | None = None
    max_epochs: int | None = None
    seed: int = 0
    use_cache: bool = True
    workers: int = 1
    pipeline_name: str = PipelineConfig.pipeline_name
    # A Python with AWS's training toolkit (bin/container-env training): every job runs with
    # it, and training jobs start through sagemaker-training as in SageMaker's containers.
    container_python: Path | None = None


@dataclass
class Outcome:
    record: dict
    path: Path

    @property
    def succeeded(self) -> bool:
        return self.record["Status"] == "Succeeded"

    def step(self, name: str) -> dict | None:
        return next((s for s in self.record["Steps"] if s["StepName"] == name), None)


def new_execution_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"local-{stamp}-{secrets.token_hex(2)}"


def execution_arn(pipeline: str, execution_id: str) -> str:
    return f"{records.arn('pipeline', pipeline)}/execution/{execution_id}"


class StepFailure(Exception):
    """A step ended Failed; the message is its FailureReason."""


@dataclass
class StepState:
    node: Node
    status: str = "Pending"  # Pending, Executing, Succeeded, Cached, Failed, Skipped
    properties: dict | None = None
    record: dict = field(default_factory=dict)


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
        # A resumed execution keeps its id: job names, output URIs built from
        # Execution.PipelineExecutionId and the reused steps' properties all carry it.
        self.resumed = resumed
        self.id = resumed["PipelineExecutionId"] if resumed else new_execution_id()
        self.arn = execution_arn(options.pipeline_name, self.id)
        # Job and model names carry the execution's stamp: unique, and traceable to it.
        self.tail = self.id.removeprefix("local-")
        self.dir = self.store.executions / self.id
        self.started = resumed["StartTime"] if resumed else records.now()
        self.clock = time.monotonic()
        self.states = {name: StepState(node) for name, node in nodes.items()}
        self.order: list[str] = []  # steps in the order they started (or were skipped)
        self.lock = threading.RLock()
        self.parameters: dict = {}
        self.job_env: dict[str, str | None] = {}
        self.container: ContainerPython = ContainerPython.host()
        # One per execution: a stop ends this execution's jobs, and a later one starts afresh.
        self.supervisor = Supervisor()
        self.record: dict = {}
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

    # ------------------------------------------------------------------ record

    def _write_record(self) -> None:
        with self.lock:
            self.record["Steps"] = [self.states[name].record for name in self.order]
            records.write_json(self.dir / "record.json", self.record, sort_keys=False)

    def _begin(self, name: str, status: str = "Executing") -> None:
        with self.lock:
            state = self.states[name]
            state.status = status
            state.record = {
                "StepName": name,
                "StepType": state.node.type,
                "DisplayName": state.node.step.get("DisplayName"),
                "Status": status,
                "StartTime": records.now(),
                "EndTime": None,
                "Seconds": None,
                "Properties": None,
                "LogPath": None,
                "FailureReason": None,
            }
            self.order.append(name)
            self._write_record()

    def _note(self, name: str, **fields) -> None:
        with self.lock:
            self.states[name].record.update(fields)
            self._write_record()

    def _finish(self, name: str, status: str, properties: dict | None = None, **fields) -> None:
        with self.lock:
            state = self.states[name]
            state.status = status
            state.properties = properties
            record = state.record
            record.update(fields)
            record["Status"] = status
            record["Properties"] = properties
            record["EndTime"] = records.now()
            started = datetime.fromisoformat(record["StartTime"])
            ended = datetime.fromisoformat(record["EndTime"])
            record["Seconds"] = round((ended - started).total_seconds(), 3)
            self._write_record()

    # ------------------------------------------------------------- expressions

    def context(self, job_name: str | None = None) -> ex.Context:
        def execution(name: str):
            values = {
                "PipelineExecutionId": self.id,
                "PipelineExecutionArn": self.arn,
                "PipelineName": self.options.pipeline_name,
                "PipelineArn": records.arn("pipeline", self.options.pipeline_name),
                "StartDateTime": self.started,
                "CurrentDateTime": records.now(),
            }
            if name in values:
                return values[name]
            if job_name is None:
                raise ex.ExpressionError(f"Execution.{name} is only defined inside a job step")
            return job_name

        return ex.Context(
            parameters=self.parameters,
            execution=execution,
            step_properties=self._properties_of,
            property_file_uri=self._property_file_uri,
            read_json=self._read_json,
        )

    def _properties_of(self, name: str) -> dict:
        state = self.states.get(name)
        if state is None:
            raise ex.ExpressionError(f"there is no step {name}")
        if state.status not in DONE or state.properties is None:
            raise ex.ExpressionError(f"step {name} has no properties: it is {state.status}")
        return state.properties

    def _property_file_uri(self, step: str, file_name: str) -> str:
        declared = [
            pf
            for pf in self.nodes[step].step.get("PropertyFiles") or []
            if pf.get("PropertyFileName") == file_name
        ]
        if not declared:
            raise ex.ExpressionError(f"step {step} declares no property file {file_name}")
        output_name = declared[0]["OutputName"]
        outputs = (self._properties_of(step).get("ProcessingOutputConfig") or {}).get("Outputs")
        for output in outputs or []:
            if output.get("OutputName") == output_name:
                return join_uri(output["S3Output"]["S3Uri"], declared[0]["FilePath"])
        raise ex.ExpressionError(
            f"property file {file_name} of step {step} names output {output_name!r}, "
            "which the step does not have"
        )

    def _read_json(self, uri: str):
        try:
            return json.loads(self.store.read_bytes(uri))
        except StoreError as err:
            raise ex.ExpressionError(str(err)) from None
        except ValueError as err:
            raise ex.ExpressionError(f"{uri} is not JSON: {err}") from None

    def resolve(self, node: Node, job_name: str | None = None) -> dict:
        try:
            return ex.resolve(node.arguments, self.context(job_name), "Arguments")
        except ex.ExpressionError as err:
            raise StepFailure(str(err)) from None

    # ------------------------------------------------------------------- the run

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
        if options.workers > 1 and "OMP_NUM_THREADS" not in os.environ:
            # Parallel jobs share the cores instead of each spinning up a thread per core.
            self.job_env["OMP_NUM_THREADS"] = str(max(1, records.cpu_count() // options.workers))
        return overrides

    def run(self) -> Outcome:
        overrides = self._prepare()
        if self.resumed is not None:
            self._reopen(overrides)
        else:
            self._open(overrides)
        log.info("execution %s (record %s)", self.id, self.dir / "record.json")
        try:
            # Jobs that ask SageMaker about the deployment get the store's answers.
            with SageMakerApi(self.store) as api:
                self.job_env.update(api.environment())
                failure = self._schedule()
        except KeyboardInterrupt:
            # Again: a second Ctrl-C may have cut short the wait for the jobs to stop.
            self.supervisor.stop_all()
            self._end("Stopped", "interrupted")
            raise
        self._end("Failed" if failure else "Succeeded", failure)
        return Outcome(self.record, self.dir / "record.json")

    def _open(self, overrides: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # What ran, beside its record: a later --resume needs the definition as it was.
        definition_path = self.dir / "definition.json"
        records.write_json(definition_path, self.definition, sort_keys=False)
        self.record = {
            "PipelineExecutionArn": self.arn,
            "PipelineExecutionId": self.id,
            "PipelineName": self.options.pipeline_name,
            "Status": "Executing",
            "FailureReason": None,
            "Parameters": self.parameters,
            "LocalOverrides": overrides,
            "DefinitionPath": str(definition_path),
            "StartTime": self.started,
            "EndTime": None,
            "Steps": [],
        }
        self._write_record()

    def _reopen(self, overrides: dict) -> None:
        """Take the finished steps of the record over as they are; the rest run again.

        Skipped, Failed and still-Executing entries (a killed run) are dropped: the
        scheduler decides them afresh. The Resumes entry keeps the previous status and
        failure reason; the failed attempt's log stays (a rerun job appends to it).
        """
        previous = self.resumed
        reused = []
        for entry in previous.get("Steps") or []:
            name = entry.get("StepName")
            state = self.states.get(name)
            if state is None or entry.get("Status") not in DONE:
                continue
            state.status = entry["Status"]
            state.properties = entry.get("Properties")
            state.record = entry
            self.order.append(name)
            reused.append(name)
        resumes = list(previous.get("Resumes") or [])
        resumes.append(
            {
                "Time": records.now(),
                "PreviousStatus": previous.get("Status"),
                "PreviousFailureReason": previous.get("FailureReason"),
                "PreviousEndTime": previous.get("EndTime"),
                "ReusedSteps": reused,
                "LocalOverrides": overrides,
            }
        )
        self.record = {
            **previous,
            "Status": "Executing",
            "FailureReason": None,
            "EndTime": None,
            "Resumes": resumes,
        }
        self._write_record()
        log.info(
            "resuming %s: reusing %s",
            self.id,
            ", ".join(reused) or "no step (none had finished)",
        )

    def _end(self, status: str, reason: str | None) -> None:
        with self.lock:
            for name, state in self.states.items():
                if state.status == "Executing":
                    self._finish(name, "Failed", FailureReason="the execution stopped")
            self.record["Status"] = status
            self.record["FailureReason"] = reason
            self.record["EndTime"] = records.now()
            self._write_record()
        seconds = time.monotonic() - self.clock
        log.info("execution %s %s in %.1fs", self.id, status, seconds)

    def _ready(self) -> tuple[list[str], list[str]]:
        """(steps that can start now, steps that will never run)."""
        ready, never = [], []
        for name, state in self.states.items():
            if state.status != "Pending":
                continue
            node = state.node
            dead = any(self.states[d].status == "Skipped" for d in node.deps) or any(
                self.states[condition].status in DONE
                and self.states[condition].properties["Outcome"] is not outcome
                for condition, outcome in node.branches
            )
            if dead:
                never.append(name)
            elif all(self.states[d].status in DONE for d in node.deps):
                ready.append(name)
        return ready, never

    def _schedule(self) -> str | None:
        """Run steps as they become ready; the execution's failure reason, or None."""
        workers = max(1, self.options.workers)
        running: dict[Future, str] = {}
        failure: str | None = None
        with ThreadPoolExecutor(workers, thread_name_prefix="step") as pool:
            try:
                while True:
                    if failure is None:
                        ready, never = self._ready()
                        while never:
                            for name in never:
                                self._begin(name, "Skipped")
                                self._finish(name, "Skipped")
                            ready, never = self._ready()
                        for name in ready[: workers - len(running)]:
                            self._begin(name)
                            running[pool.submit(self._execute, self.nodes[name])] = name
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        name = running.pop(future)
                        reason = future.result()
                        if reason is not None and failure is None:
                            failure = f"step {name} failed: {reason}"
            except KeyboardInterrupt:
                self.supervisor.stop_all()
                raise
        return failure

    # -------------------------------------------------------------------- steps

    def _execute(self, node: Node) -> str | None:
        """Run one step to its end; its failure reason, or None."""
        try:
            getattr(self, f"_step_{node.type.lower()}")(node)
        except (
            StepFailure,
            JobFailed,
            TuningError,
            StoreError,
            registry.RegistryError,
            endpoints.EndpointError,
        ) as err:
            reason = str(err)
        except Exception as err:
            # A bug or an unexpected environment problem still ends the record cleanly.
            log.exception("[%s] unexpected error", node.name)
            reason = f"{type(err).__name__}: {err}"
        else:
            return None
        self._finish(node.name, "Failed", FailureReason=reason)
        # INFO: the CLI's closing error line carries the reason; saying it twice as an error
        # reads like two failures.
        log.info("[%s] Failed: %s", node.name, reason)
        return reason

    def _succeed(self, node: Node, properties: dict, **fields) -> None:
        self._finish(node.name, "Succeeded", properties, **fields)
        log.info("[%s] Succeeded in %.1fs", node.name, self.states[node.name].record["Seconds"])

    def _from_cache(self, node: Node, key: str | None) -> bool:
        entry = self.cache.lookup(node, key)
        if entry is None:
            return False
        source = entry["PipelineExecutionArn"]
        self._finish(
            node.name,
            "Cached",
            entry["Properties"],
            CacheHitResult={"SourcePipelineExecutionArn": source},
            **entry.get("Extra", {}),
        )
        log.info("[%s] Cached: the result of %s", node.name, source.rsplit("/", 1)[-1])
        return True

    def _job(self, job_name: str, label: str, log_name: str) -> Job:
        root = self.dir / "jobs" / job_name
        # Only a resumed step finds its job root there: what its failed attempt left
        # behind must not leak into the new container.
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        return Job(
            store=self.store,
            name=job_name,
            root=root,
            log_path=self.dir / "logs" / f"{log_name}.log",
            label=label,
            supervisor=self.supervisor,
            env=dict(self.job_env),
            container=self.container,
        )

    def _step_processing(self, node: Node) -> None:
        job_name = f"{node.name}-{self.tail}"
        arguments = self.resolve(node, job_name)
        key = self.cache.key(node, arguments)
        if self._from_cache(node, key):
            return
        job = self._job(job_name, node.name, node.name)
        self._note(node.name, LogPath=str(job.log_path))
        log.info("[%s] processing job %s (log %s)", node.name, job_name, job.log_path)
        properties = run_processing(job, arguments)
        self.cache.save(node, key, arguments, properties, {}, self.arn)
        self._succeed(node, properties)

    def _step_training(self, node: Node) -> None:
        job_name = f"{node.name}-{self.tail}"
        arguments = self.resolve(node, job_name)
        key = self.cache.key(node, arguments)
        if self._from_cache(node, key):
            return
        hyperparameters, changed = clamp_epochs(
            arguments.get("HyperParameters") or {}, self.options.max_epochs
        )
        job = self._job(job_name, node.name, node.name)
        self._note(node.name, LogPath=str(job.log_path))
        log.info("[%s] training job %s (log %s)", node.name, job_name, job.log_path)
        if changed:
            log.info("[%s] --max-epochs: epochs %s -> %s", node.name, *changed["epochs"])
        result = run_training(job, {**arguments, "HyperParameters": hyperparameters})
        fields: dict = {"LocalOverrides": changed}
        if result.rule_evaluations:
            fields["RuleEvaluations"] = result.rule_evaluations
        if result.profiler_report is not None:
            fields["ProfilerReport"] = result.profiler_report
        self.cache.save(node, key, arguments, result.properties, fields, self.arn)
        self._succeed(node, result.properties, **fields)

    def _step_tuning(self, node: Node) -> None:
        job_name = f"{node.name}-{self.tail}"
        arguments = self.resolve(node, job_name)
        key = self.cache.key(node, arguments)
        if self._from_cache(node, key):
            return

        def run_trial(number: int, trial_name: str, trial_arguments: dict):
            label, log_name = f"{node.name} trial {number}", f"{node.name}-{number:03d}"
            return run_training(self._job(trial_name, label, log_name), trial_arguments)

        tuning = TuningRun(
            step_name=node.name,
            job_name=job_name,
            seed=self.options.seed,
            max_trials=self.options.max_trials,
            max_epochs=self.options.max_epochs,
            workers=self.options.workers,
            run_trial=run_trial,
        )
        properties, trials = run_tuning(
            tuning,
            arguments,
            on_trial=lambda trials: self._note(node.name, Trials=[t.record() for t in trials]),
        )
        fields = {"Trials": [trial.record() for trial in trials]}
        self.cache.save(node, key, arguments, properties, fields, self.arn)
        self._succeed(node, properties, **fields)

    def _step_condition(self, node: Node) -> None:
        try:
            outcome = ex.evaluate_all(node.arguments.get("Conditions") or [], self.context())
        except ex.ExpressionError as err:
            raise StepFailure(str(err)) from None
        taken, other = ("IfSteps", "ElseSteps") if outcome else ("ElseSteps", "IfSteps")
        names = [step.get("Name") for step in node.arguments.get(taken) or []]
        skipped = [step.get("Name") for step in node.arguments.get(other) or []]
        log.info(
            "[%s] condition is %s: next %s%s",
            node.name,
            str(outcome).lower(),
            ", ".join(names) or "nothing",
            f"; skipping {', '.join(skipped)}" if skipped else "",
        )
        self._succeed(node, step_properties.condition(outcome))

    def _step_fail(self, node: Node) -> None:
        message = self.resolve(node).get("ErrorMessage")
        raise StepFailure(ex.to_text(message) if message is not None else "FailStep reached")

    def _step_registermodel(self, node: Node) -> None:
        from pipeline import deployment
        from pipeline.local.sagemaker_api import job_client

        arguments = self.resolve(node)
        # The registry records the execution that registered a version.
        metadata = {**(arguments.get("MetadataProperties") or {}), "GeneratedBy": self.arn}
        with job_client(self.job_env) as sagemaker:
            package = deployment.register_version(
                sagemaker, {**arguments, "MetadataProperties": metadata}
            )
        package = records.plain(package)
        log.info(
            "[%s] registered %s version %d (%s)",
            node.name,
            package["ModelPackageGroupName"],
            package["ModelPackageVersion"],
            package["ModelApprovalStatus"],
        )
        self._succeed(node, step_properties.register_model(arguments, package))

    def _step_model(self, node: Node) -> None:
        from pipeline import deployment
        from pipeline.local.sagemaker_api import job_client

        arguments, name = self.resolve(node), f"{node.name}-{self.tail}"
        with job_client(self.job_env) as sagemaker:
            arn = deployment.create_model(sagemaker, name, arguments)
        created = records.now()
        self._succeed(node, step_properties.model(arguments, name=name, arn=arn, created=created))

    def _step_endpointconfig(self, node: Node) -> None:
        from pipeline import deployment
        from pipeline.local.sagemaker_api import job_client

        arguments = self.resolve(node)
        name = arguments.get("EndpointConfigName") or f"{node.name}-{self.tail}"
        with job_client(self.job_env) as sagemaker:
            arn = deployment.create_endpoint_config(sagemaker, name, arguments)
        properties = step_properties.endpoint_config(
            arguments, name=name, arn=arn, created=records.now()
        )
        self._succeed(node, properties)

    def _step_endpoint(self, node: Node) -> None:
        from pipeline import deployment
        from pipeline.local.sagemaker_api import job_client

        arguments = self.resolve(node)
        with job_client(self.job_env) as sagemaker:
            before, endpoint = deployment.deploy_endpoint(
                sagemaker, arguments.get("EndpointName"), arguments.get("EndpointConfigName")
            )
        log.info(
            "[%s] %s endpoint %s (`dogbreed-pipeline serve-local --store %s` serves it)",
            node.name,
            "created" if before is None else "updated",
            endpoint["EndpointName"],
            self.store.root,
        )
        self._succeed(node, step_properties.endpoint(arguments, records.plain(endpoint)))


def run(definition: dict, options: Options) -> Outcome:
    """Check, then execute `definition`; the outcome (its record says Succeeded or Failed).

    DefinitionError (or pipeline.errors.UsageError for a bad --param) before anything runs.
    """
    nodes = check_definition(definition)
    if options.workers < 1:
        raise DefinitionError("--workers must be at least 1")
    return Execution(definition, options, nodes).run()


def find_execution(store: Store, execution_id: str | None) -> dict:
    """The record of `execution_id`, or of the latest execution that did not succeed."""
    if execution_id is not None:
        path = store.executions / execution_id / "record.json"
        if "/" in execution_id or execution_id in (".", "..") or not path.is_file():
            raise DefinitionError(f"--resume: no execution {execution_id} in {store.root}")
        return _read_record(path)
    records = sorted(store.executions.glob("*/record.json"), reverse=True)
    for path in records:
        record = _read_record(path)
        if record.get("Status") != "Succeeded":
            return record
    if not records:
        raise DefinitionError(f"--resume: no execution in {store.root} to resume")
    raise DefinitionError(
        f"--resume: no execution in {store.root} to resume: all {len(records)} Succeeded"
    )


def _read_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DefinitionError(f"--resume: cannot read the record {path}: {err}") from None


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
