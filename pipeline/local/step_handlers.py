"""One handler per step type: resolve the step's arguments, do its work, record its end.

`Steps.execute(node)` runs on a worker thread and calls `_step_<type>`; whatever a handler
raises ends the step Failed with a reason. The job steps (Processing, Training, Tuning)
share one wrapper, `cached_job`: resolve, answer from the step cache when it has the result,
else run the job and save its result to the cache.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from collections.abc import Callable

from pipeline import deployment
from pipeline.local import endpoints, records, registry, tracking
from pipeline.local import expressions as ex
from pipeline.local import properties as step_properties
from pipeline.local.cache import StepCache
from pipeline.local.container import ContainerPython, Job
from pipeline.local.execution_record import ExecutionRecord
from pipeline.local.options import Options
from pipeline.local.plan import Node
from pipeline.local.processing_job import run_processing
from pipeline.local.records import DONE
from pipeline.local.sagemaker_api import job_client
from pipeline.local.store import Store, StoreError, join_uri
from pipeline.local.supervisor import JobFailed, Supervisor
from pipeline.local.training_job import clamp_epochs, run_training
from pipeline.local.tuning import TuningError, TuningRun, run_tuning

log = logging.getLogger("pipeline.local")


class StepFailure(Exception):
    """A step ended Failed; the message is its FailureReason."""


def cached_job(
    run: Callable[[Steps, Node, str, dict], tuple[dict, dict]],
) -> Callable[[Steps, Node], None]:
    """The handler of a job step from `run(steps, node, job_name, arguments)`, which runs
    the job and returns (its properties, the fields it adds to the step's record)."""

    @functools.wraps(run)
    def handler(self: Steps, node: Node) -> None:
        job_name = f"{node.name}-{self.tail}"
        arguments = self.resolve(node, job_name)
        key = self.cache.key(node, arguments)
        if self._from_cache(node, key):
            return
        properties, fields = run(self, node, job_name, arguments)
        self.cache.save(node, key, arguments, properties, fields, self.arn)
        self._succeed(node, properties, **fields)

    return handler


class Steps:
    """The step handlers of one execution and what they read: its record, store and cache."""

    def __init__(
        self,
        record: ExecutionRecord,
        options: Options,
        store: Store,
        cache: StepCache,
        parameters: dict,
        job_env: dict[str, str | None],
        container: ContainerPython,
        supervisor: Supervisor,
        tracking_store: tracking.StoreInit | None = None,
    ):
        self.record = record
        self.options = options
        self.store = store
        self.cache = cache
        self.parameters = parameters
        self.job_env = job_env
        self.container = container
        self.supervisor = supervisor
        self.tracking_store = tracking_store
        self.arn = record.arn
        # Job and model names carry the execution's stamp: unique, and traceable to it.
        self.tail = record.id.removeprefix("local-")

    # ------------------------------------------------------------- expressions

    def context(self, job_name: str | None = None) -> ex.Context:
        def execution(name: str):
            values = {
                "PipelineExecutionId": self.record.id,
                "PipelineExecutionArn": self.arn,
                "PipelineName": self.options.pipeline_name,
                "PipelineArn": records.arn("pipeline", self.options.pipeline_name),
                "StartDateTime": self.record.started,
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
        state = self.record.states.get(name)
        if state is None:
            raise ex.ExpressionError(f"there is no step {name}")
        if state.status not in DONE or state.properties is None:
            raise ex.ExpressionError(f"step {name} has no properties: it is {state.status}")
        return state.properties

    def _property_file_uri(self, step: str, file_name: str) -> str:
        declared = [
            pf
            for pf in self.record.states[step].node.step.get("PropertyFiles") or []
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

    # -------------------------------------------------------------------- steps

    def execute(self, node: Node) -> str | None:
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
        self.record.finish(node.name, "Failed", FailureReason=reason)
        # INFO: the CLI's closing error line carries the reason; saying it twice as an error
        # reads like two failures.
        log.info("[%s] Failed: %s", node.name, reason)
        return reason

    def _succeed(self, node: Node, properties: dict, **fields) -> None:
        self.record.finish(node.name, "Succeeded", properties, **fields)
        seconds = self.record.states[node.name].record["Seconds"]
        log.info("[%s] Succeeded in %.1fs", node.name, seconds)

    def _from_cache(self, node: Node, key: str | None) -> bool:
        entry = self.cache.lookup(node, key)
        if entry is None:
            return False
        source = entry["PipelineExecutionArn"]
        self.record.finish(
            node.name,
            "Cached",
            entry["Properties"],
            CacheHitResult={"SourcePipelineExecutionArn": source},
            **entry.get("Extra", {}),
        )
        log.info("[%s] Cached: the result of %s", node.name, source.rsplit("/", 1)[-1])
        return True

    def _job(self, job_name: str, label: str, log_name: str) -> Job:
        root = self.record.dir / "jobs" / job_name
        # Only a resumed step finds its job root there: what its failed attempt left
        # behind must not leak into the new container.
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        return Job(
            store=self.store,
            name=job_name,
            root=root,
            log_path=self.record.dir / "logs" / f"{log_name}.log",
            label=label,
            supervisor=self.supervisor,
            env=dict(self.job_env),
            container=self.container,
        )

    def _tracked(self, job: Job, node: Node, arguments: dict) -> Job:
        """The job with the MLflow variables of its step (pipeline/local/tracking.py)."""
        if self.tracking_store is not None:
            self.tracking_store.wait()
        env = tracking.step_environment(node, arguments, self.record.id, self.options.pipeline_name)
        job.env = {**env, **job.env}
        return job

    def _start_job(self, node: Node, job_name: str, kind: str, arguments: dict) -> Job:
        job = self._tracked(self._job(job_name, node.name, node.name), node, arguments)
        self.record.note(node.name, LogPath=str(job.log_path))
        log.info("[%s] %s job %s (log %s)", node.name, kind, job_name, job.log_path)
        return job

    @cached_job
    def _step_processing(self, node: Node, job_name: str, arguments: dict) -> tuple[dict, dict]:
        job = self._start_job(node, job_name, "processing", arguments)
        return run_processing(job, arguments), {}

    @cached_job
    def _step_training(self, node: Node, job_name: str, arguments: dict) -> tuple[dict, dict]:
        hyperparameters, changed = clamp_epochs(
            arguments.get("HyperParameters") or {}, self.options.max_epochs
        )
        job = self._start_job(node, job_name, "training", arguments)
        if changed:
            log.info("[%s] --max-epochs: epochs %s -> %s", node.name, *changed["epochs"])
        result = run_training(job, {**arguments, "HyperParameters": hyperparameters})
        fields: dict = {"LocalOverrides": changed}
        if result.rule_evaluations:
            fields["RuleEvaluations"] = result.rule_evaluations
        if result.profiler_report is not None:
            fields["ProfilerReport"] = result.profiler_report
        return result.properties, fields

    @cached_job
    def _step_tuning(self, node: Node, job_name: str, arguments: dict) -> tuple[dict, dict]:
        def run_trial(number: int, trial_name: str, trial_arguments: dict):
            label, log_name = f"{node.name} trial {number}", f"{node.name}-{number:03d}"
            job = self._tracked(self._job(trial_name, label, log_name), node, arguments)
            return run_training(job, trial_arguments)

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
            on_trial=lambda trials: self.record.note(
                node.name, Trials=[t.record() for t in trials]
            ),
        )
        return properties, {"Trials": [trial.record() for trial in trials]}

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
        arguments, name = self.resolve(node), f"{node.name}-{self.tail}"
        with job_client(self.job_env) as sagemaker:
            arn = deployment.create_model(sagemaker, name, arguments)
        created = records.now()
        self._succeed(node, step_properties.model(arguments, name=name, arn=arn, created=created))
