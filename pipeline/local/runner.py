"""Execute a pipeline definition on this machine: DAG order, conditions, caching, the record.

`run(definition, options)` checks the whole definition before anything runs (step types,
expressions, references down to the property path, conditions, dependency cycles), so a
typo fails in a second, not after an hour of training. It then places the code bundle (and
`--input` data) in the store and runs the steps as their dependencies finish: `Get`
references to other steps and `DependsOn` order them, the steps of a condition's branches
wait for the condition, and the branch not taken is recorded as Skipped, with everything
that depends on it. The first failure (a job, a FailStep, an expression) stops new steps
from starting; the execution ends Failed with that step's reason.

Caching follows SageMaker's rules (the default cache key attributes of each step type,
`CacheConfig.ExpireAfter`), with one stricter addition: the content hash of every input
object is part of the key, so new data at the same S3 URI is never mistaken for the old.
A hit reuses the earlier execution's properties (its job names and output URIs) and is
recorded as Cached, provided those outputs are still in the store.

The execution record (`<store>/executions/<id>/record.json`, docs/local-runner.md) is
rewritten after every change, so it shows progress while the run goes on and holds every
finished step's properties for a later `--resume`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pipeline.local import expressions as ex
from pipeline.local import jobs, registry
from pipeline.local.store import Store, StoreError, join_uri
from pipeline.local.tuning import TuningError, TuningRun, range_names, run_tuning

log = logging.getLogger("pipeline.local")

JOB_TYPES = ("Processing", "Training", "Tuning")
SUPPORTED_TYPES = (
    *JOB_TYPES,
    "Condition",
    "Fail",
    "RegisterModel",
    "Model",
    "EndpointConfig",
    "Endpoint",
)
# SageMaker's default cache key attributes by step type (the Tuning step's
# TrainingJobDefinition counts through the children listed in _TUNING_DEFINITION_KEYS).
CACHE_KEYS = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "Training": (
        "AlgorithmSpecification",
        "CheckpointConfig",
        "DebugHookConfig",
        "DebugRuleConfigurations",
        "Environment",
        "HyperParameters",
        "InputDataConfig",
    ),
    "Tuning": ("HyperParameterTuningJobConfig", "TrainingJobDefinitions"),
}
_TUNING_DEFINITION_KEYS = (
    "AlgorithmSpecification",
    "HyperParameterRanges",
    "InputDataConfig",
    "StaticHyperParameters",
    "TuningObjective",
)
CACHED_STATUSES = ("Succeeded", "Cached")
_DURATION = re.compile(
    r"^P?(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$",
    re.IGNORECASE,
)
_CODE_URI = re.compile(
    r'^"?s3://([^/"]+)/(.+)/code/([0-9a-f]{16})/(?:sourcedir\.tar\.gz|scripts/?)"?$'
)
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class DefinitionError(ValueError):
    """The definition (or the run's options) cannot be executed; found before any step runs."""


@dataclass
class Options:
    store: Path = Path("local-store")
    parameters: list[tuple[str, str]] = field(default_factory=list)  # --param Name=Value
    input: Path | None = None
    max_trials: int | None = None
    max_epochs: int | None = None
    seed: int = 0
    use_cache: bool = True
    workers: int = 1
    pipeline_name: str = "dogbreed-pipeline"


@dataclass
class Outcome:
    record: dict
    path: Path

    @property
    def succeeded(self) -> bool:
        return self.record["Status"] == "Succeeded"

    @property
    def failed_step(self) -> dict | None:
        return next((s for s in self.record["Steps"] if s["Status"] == "Failed"), None)


# ----------------------------------------------------------------------- the graph


@dataclass
class Node:
    name: str
    type: str
    step: dict
    deps: set[str] = field(default_factory=set)
    # (condition step, outcome it needs): the step lies in that condition's If/Else branch
    branches: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def arguments(self) -> dict:
        return self.step.get("Arguments") or {}

    @property
    def expressions_of(self):
        """What holds this step's own expressions (a condition's branches are other steps)."""
        if self.type == "Condition":
            return self.arguments.get("Conditions") or []
        return self.arguments


def _flatten(steps: list, problems: list[str]) -> dict[str, Node]:
    nodes: dict[str, Node] = {}

    def add(step: dict, branches: list[tuple[str, bool]]) -> None:
        name = step.get("Name")
        if not isinstance(name, str) or not name:
            problems.append(f"a step has no Name: {json.dumps(step)[:120]}")
            return
        if name in nodes:
            problems.append(f"step {name}: the name is used twice")
            return
        kind = step.get("Type")
        if kind not in SUPPORTED_TYPES:
            problems.append(
                f"step {name}: step type {kind!r} is not supported by run-local "
                f"(it runs {', '.join(SUPPORTED_TYPES)})"
            )
        node = Node(name, kind, step, branches=list(branches))
        nodes[name] = node
        if kind == "Condition":
            for key, outcome in (("IfSteps", True), ("ElseSteps", False)):
                for child in node.arguments.get(key) or []:
                    add(child, [*branches, (name, outcome)])

    for step in steps:
        add(step, [])
    return nodes


def skeleton(node: Node):
    """The shape of the properties this step will have, for checking references up front.

    Placeholders are "" and `ex.OPEN` (anything below is accepted); the real properties are
    built by jobs.py, tuning.py and the step handlers here, and a test compares the two.
    """
    args = node.arguments
    if node.type == "Processing":
        return {
            **args,
            "ProcessingJobName": "",
            "ProcessingJobArn": "",
            "ProcessingJobStatus": "",
            "ExitMessage": "",
            "CreationTime": "",
            "ProcessingStartTime": "",
            "ProcessingEndTime": "",
            "LastModifiedTime": "",
            "PropertyFiles": {
                pf.get("PropertyFileName"): "" for pf in node.step.get("PropertyFiles") or []
            },
        }
    if node.type == "Training":
        metrics = (args.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
        shape = {
            **args,
            "TrainingJobName": "",
            "TrainingJobArn": "",
            "TrainingJobStatus": "",
            "SecondaryStatus": "",
            "ModelArtifacts": {"S3ModelArtifacts": ""},
            "FinalMetricDataList": [
                {"MetricName": m.get("Name"), "Value": "", "Timestamp": ""} for m in metrics
            ],
            "CreationTime": "",
            "TrainingStartTime": "",
            "TrainingEndTime": "",
            "LastModifiedTime": "",
            "TrainingTimeInSeconds": "",
            "BillableTimeInSeconds": "",
        }
        if args.get("DebugRuleConfigurations"):
            shape["DebugRuleEvaluationStatuses"] = ex.OPEN
        if args.get("ProfilerRuleConfigurations"):
            shape["ProfilerRuleEvaluationStatuses"] = ex.OPEN
        return shape
    if node.type == "Tuning":
        config = args.get("HyperParameterTuningJobConfig") or {}
        summary = {
            "TrainingJobName": "",
            "TrainingJobArn": "",
            "CreationTime": "",
            "TrainingStartTime": "",
            "TrainingEndTime": "",
            "TrainingJobStatus": "",
            "TunedHyperParameters": {name: "" for name in range_names(config)},
            "ObjectiveStatus": "",
            "FinalHyperParameterTuningJobObjectiveMetric": {
                "Type": "",
                "MetricName": "",
                "Value": "",
            },
        }
        return {
            **args,
            "HyperParameterTuningJobName": "",
            "HyperParameterTuningJobArn": "",
            "HyperParameterTuningJobStatus": "",
            "CreationTime": "",
            "HyperParameterTuningEndTime": "",
            "LastModifiedTime": "",
            "TrainingJobStatusCounters": ex.OPEN,
            "ObjectiveStatusCounters": ex.OPEN,
            "BestTrainingJob": summary,
            "TrainingJobSummaries": ex.OPEN,
        }
    if node.type == "Condition":
        return {"Outcome": ""}
    if node.type == "RegisterModel":
        return {
            **args,
            "ModelPackageName": "",
            "ModelPackageGroupName": "",
            "ModelPackageVersion": "",
            "ModelPackageArn": "",
            "ModelPackageStatus": "",
            "ModelApprovalStatus": "",
            "CreationTime": "",
        }
    if node.type == "Model":
        return {**args, "ModelName": "", "ModelArn": "", "CreationTime": ""}
    if node.type == "EndpointConfig":
        return {**args, "EndpointConfigName": "", "EndpointConfigArn": "", "CreationTime": ""}
    if node.type == "Endpoint":
        return {
            **args,
            "EndpointName": "",
            "EndpointArn": "",
            "EndpointConfigName": "",
            "EndpointStatus": "",
            "CreationTime": "",
            "LastModifiedTime": "",
        }
    return {}


def check_definition(definition: dict) -> dict[str, Node]:
    """The step graph, or DefinitionError listing everything that would stop a run."""
    if not isinstance(definition, dict) or not isinstance(definition.get("Steps"), list):
        raise DefinitionError("not a pipeline definition: no Steps list")
    problems: list[str] = []
    nodes = _flatten(definition["Steps"], problems)
    declared = {p.get("Name") for p in definition.get("Parameters") or []}
    for node in nodes.values():
        _check_expressions(node, nodes, declared, problems)
        for dependency in node.step.get("DependsOn") or []:
            if dependency not in nodes:
                problems.append(f"step {node.name}: DependsOn names no step {dependency!r}")
            else:
                node.deps.add(dependency)
        for condition, _ in node.branches:
            node.deps.add(condition)
        if node.type == "Condition":
            _check_conditions(node, node.arguments.get("Conditions") or [], problems)
    if not problems:
        cycle = _find_cycle(nodes)
        if cycle:
            problems.append(f"steps depend on each other in a cycle: {' -> '.join(cycle)}")
    if problems:
        raise DefinitionError("; ".join(problems))
    return nodes


def _check_expressions(node: Node, nodes: dict, declared: set, problems: list) -> None:
    for where, function, argument in ex.iter_functions(node.expressions_of):
        at = f"step {node.name}, {where or 'Arguments'}"
        if function not in ex.FUNCTIONS:
            problems.append(
                f"{at}: expression {function} is not supported by run-local "
                f"(supported: {', '.join(ex.FUNCTIONS)})"
            )
            continue
        if function != "Get":
            continue
        try:
            ref = ex.parse_reference(argument)
        except ex.ExpressionError as err:
            problems.append(f"{at}: {err}")
            continue
        if ref.root == "Parameters" and ref.name not in declared:
            problems.append(
                f"{at}: Get {ref.text}: the definition declares no parameter {ref.name}"
            )
        elif ref.root == "Execution" and ref.name not in ex.EXECUTION_VARIABLES:
            problems.append(
                f"{at}: Get {ref.text}: no execution variable {ref.name} "
                f"(known: {', '.join(ex.EXECUTION_VARIABLES)})"
            )
        elif ref.root == "Steps":
            target = nodes.get(ref.name)
            if target is None:
                problems.append(f"{at}: Get {ref.text}: there is no step {ref.name}")
                continue
            if target is node:
                problems.append(f"{at}: Get {ref.text}: a step cannot read its own properties")
                continue
            try:
                ex.check_path(skeleton(target), ref.path, f"{ref.name} ({target.type})")
            except ex.ExpressionError as err:
                problems.append(f"{at}: Get {ref.text}: {err}")
                continue
            node.deps.add(ref.name)


def _check_conditions(node: Node, conditions: list, problems: list) -> None:
    for condition in conditions:
        kind = condition.get("Type") if isinstance(condition, dict) else None
        if kind not in ex.CONDITION_TYPES:
            problems.append(
                f"step {node.name}: condition type {kind!r} is not supported "
                f"(supported: {', '.join(ex.CONDITION_TYPES)})"
            )
        elif kind == "Not":
            _check_conditions(
                node, [condition.get("Condition", condition.get("Expression"))], problems
            )
        elif kind == "Or":
            _check_conditions(node, condition.get("Conditions") or [], problems)


def _find_cycle(nodes: dict[str, Node]) -> list[str] | None:
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        trail.append(name)
        for dependency in sorted(nodes[name].deps):
            if state.get(dependency) == 1:
                return [*trail[trail.index(dependency) :], dependency]
            if dependency not in state:
                found = visit(dependency)
                if found:
                    return found
        trail.pop()
        state[name] = 2
        return None

    for name in nodes:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


# ----------------------------------------------------------------- run preparation


def resolve_parameters(definition: dict, given: list[tuple[str, str]], pipeline: str) -> dict:
    """Typed parameter values: defaults, then --param values checked as `start` checks them."""
    from pipeline.cli import validate_parameters

    overrides = {p["Name"]: p["Value"] for p in validate_parameters(definition, given, pipeline)}
    values = {}
    for declared in definition.get("Parameters") or []:
        name, kind = declared["Name"], declared.get("Type", "String")
        if name in overrides:
            text = overrides[name]
            values[name] = (
                int(text)
                if kind == "Integer"
                else float(text)
                if kind == "Float"
                else text == "true"
                if kind == "Boolean"
                else text
            )
        elif "DefaultValue" in declared:
            values[name] = declared["DefaultValue"]
        else:
            raise DefinitionError(f"parameter {name} has no default: pass --param {name}=VALUE")
    return values


def place_code(store: Store, definition: dict) -> list[str]:
    """Put the code bundle the definition names into the store; the URIs placed."""
    from pipeline.bundle import Bundle
    from pipeline.config import PipelineConfig

    matches = (_CODE_URI.match(text) for text in _strings(definition))
    wanted = sorted({match.groups() for match in matches if match})
    if not wanted:
        return []
    bundle = Bundle.from_dir()
    placed = []
    for bucket, prefix, digest in wanted:
        tarball = f"s3://{bucket}/{prefix}/code/{digest}/sourcedir.tar.gz"
        if digest != bundle.sha256[:16]:
            if store.exists(tarball):
                continue
            raise DefinitionError(
                f"the definition runs code bundle {digest} ({tarball}), but scripts/ is bundle "
                f"{bundle.sha256[:16]} now and the store does not hold the former: export the "
                "definition again, or run without --definition"
            )
        try:
            config = PipelineConfig(bucket=bucket, prefix=prefix)
        except ValueError as err:
            raise DefinitionError(f"code bundle at s3://{bucket}/{prefix}: {err}") from None
        for key, data in bundle.objects(config).items():
            uri = f"s3://{bucket}/{key}"
            path = store.path(uri)
            if not path.is_file() or path.read_bytes() != data:
                store.put_bytes(uri, data)
        placed.append(bundle.tarball_uri(config))
    return placed


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def place_input(store: Store, source: Path, uri: str) -> str:
    """Copy the user's data (a folder, or one archive) to `uri`, replacing what was there."""
    source = Path(source)
    if not source.exists():
        raise DefinitionError(f"--input {source}: no such file or folder")
    try:
        target = store.path(uri)
    except StoreError as err:
        raise DefinitionError(f"InputDataUrl {uri!r}: {err}") from None
    if source.is_file() and uri.lower().endswith(_ARCHIVE_SUFFIXES):
        store.clear(uri)
        store.put_file(uri, source)
        return uri
    store.clear(uri)
    if source.is_dir():
        count = store.upload(source, uri)
        if not count:
            raise DefinitionError(f"--input {source}: the folder holds no files")
    else:
        store.put_file(join_uri(uri, source.name), source)
    log.info("input %s -> %s (%s)", source, uri, target)
    return uri


def new_execution_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"local-{stamp}-{secrets.token_hex(2)}"


def execution_arn(pipeline: str, execution_id: str) -> str:
    return f"{jobs.arn('pipeline', pipeline)}/execution/{execution_id}"


def parse_duration(text: str) -> timedelta | None:
    """ISO 8601 durations as CacheConfig.ExpireAfter takes them (P30D, PT1H, 30d, T16m)."""
    match = _DURATION.match((text or "").strip())
    if not text or not match or not any(match.groups()):
        return None
    years, months, weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(
        days=365 * years + 30 * months + 7 * weeks + days,
        hours=hours,
        minutes=minutes,
        seconds=seconds,
    )


# --------------------------------------------------------------------- the execution


@dataclass
class StepState:
    node: Node
    status: str = "Pending"  # Pending, Executing, Succeeded, Cached, Failed, Skipped
    properties: dict | None = None
    record: dict = field(default_factory=dict)


class StepFailure(Exception):
    """A step ended Failed; the message is its FailureReason."""


def _digest(material) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


class Execution:
    def __init__(self, definition: dict, options: Options, nodes: dict[str, Node]):
        self.definition = definition
        self.options = options
        self.nodes = nodes
        self.store = Store(options.store)
        self.id = new_execution_id()
        self.arn = execution_arn(options.pipeline_name, self.id)
        self.tail = self.id.removeprefix("local-")
        self.dir = self.store.executions / self.id
        self.started = jobs.now()
        self.clock = time.monotonic()
        self.states = {name: StepState(node) for name, node in nodes.items()}
        self.order: list[str] = []  # steps in the order they started (or were skipped)
        self.lock = threading.RLock()
        self.parameters: dict = {}
        self.job_env: dict[str, str] = {}
        self.record: dict = {}

    # ------------------------------------------------------------------ record

    def _write_record(self) -> None:
        with self.lock:
            self.record["Steps"] = [self.states[name].record for name in self.order]
            path = self.dir / "record.json"
            temporary = path.with_name(".record.json.tmp")
            temporary.write_text(json.dumps(self.record, indent=1) + "\n", encoding="utf-8")
            os.replace(temporary, path)

    def _begin(self, name: str, status: str = "Executing") -> dict:
        with self.lock:
            state = self.states[name]
            state.status = status
            state.record = {
                "StepName": name,
                "StepType": state.node.type,
                "Status": status,
                "StartTime": jobs.now(),
                "EndTime": None,
                "Seconds": None,
                "Properties": None,
                "LogPath": None,
                "FailureReason": None,
            }
            self.order.append(name)
            self._write_record()
            return state.record

    def _finish(self, name: str, status: str, properties: dict | None = None, **extra) -> None:
        with self.lock:
            state = self.states[name]
            state.status = status
            state.properties = properties
            record = state.record
            record.update(extra)
            record["Status"] = status
            record["Properties"] = properties
            record["EndTime"] = jobs.now()
            started = datetime.fromisoformat(record["StartTime"])
            record["Seconds"] = round(
                (datetime.fromisoformat(record["EndTime"]) - started).total_seconds(), 3
            )
            self._write_record()

    # ------------------------------------------------------------- expressions

    def context(self, job_name: str | None = None) -> ex.Context:
        def execution(name: str):
            values = {
                "PipelineExecutionId": self.id,
                "PipelineExecutionArn": self.arn,
                "PipelineName": self.options.pipeline_name,
                "PipelineArn": jobs.arn("pipeline", self.options.pipeline_name),
                "StartDateTime": self.started,
                "CurrentDateTime": jobs.now(),
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
        if state.status not in CACHED_STATUSES or state.properties is None:
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
        outputs = (self._properties_of(step).get("ProcessingOutputConfig") or {}).get("Outputs", [])
        for output in outputs:
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

    def run(self) -> Outcome:
        options = self.options
        self.dir.mkdir(parents=True, exist_ok=True)
        self.parameters = resolve_parameters(
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
        place_code(self.store, self.definition)
        if options.input is not None:
            if "InputDataUrl" not in self.parameters:
                raise DefinitionError(
                    "--input needs the definition to have an InputDataUrl parameter"
                )
            overrides["Input"] = str(Path(options.input).absolute())
            place_input(self.store, options.input, str(self.parameters["InputDataUrl"]))
        data_url = self.parameters.get("InputDataUrl")
        if isinstance(data_url, str) and data_url.startswith("s3://"):
            if not self.store.exists(data_url):
                raise DefinitionError(
                    f"no input data at {data_url} (store path {self.store.path(data_url)}): pass "
                    "--input DIR_OR_ZIP (`dogbreed-pipeline sample-data` writes a demo dataset)"
                )
        if options.workers > 1 and "OMP_NUM_THREADS" not in os.environ:
            # Parallel jobs share the cores instead of each spinning up a thread per core.
            self.job_env["OMP_NUM_THREADS"] = str(max(1, jobs.cpu_count() // options.workers))
        self.record = {
            "PipelineExecutionArn": self.arn,
            "PipelineExecutionId": self.id,
            "PipelineName": options.pipeline_name,
            "Status": "Executing",
            "FailureReason": None,
            "Parameters": self.parameters,
            "LocalOverrides": overrides,
            "StartTime": self.started,
            "EndTime": None,
            "Steps": [],
        }
        self._write_record()
        log.info("execution %s (record %s)", self.id, self.dir / "record.json")
        failure = None
        try:
            failure = self._schedule()
        except KeyboardInterrupt:
            self._end("Stopped", "interrupted")
            raise
        self._end("Failed" if failure else "Succeeded", failure)
        return Outcome(self.record, self.dir / "record.json")

    def _end(self, status: str, reason: str | None) -> None:
        with self.lock:
            for name, state in self.states.items():
                if state.status == "Executing":
                    self._finish(name, "Failed", FailureReason="the execution stopped")
            self.record["Status"] = status
            self.record["FailureReason"] = reason
            self.record["EndTime"] = jobs.now()
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
                self.states[c].status in CACHED_STATUSES
                and self.states[c].properties["Outcome"] is not outcome
                for c, outcome in node.branches
            )
            if dead:
                never.append(name)
            elif all(self.states[d].status in CACHED_STATUSES for d in node.deps):
                ready.append(name)
        return ready, never

    def _schedule(self) -> str | None:
        running: dict[Future, str] = {}
        failure: str | None = None
        with ThreadPoolExecutor(max(1, self.options.workers), thread_name_prefix="step") as pool:
            try:
                while True:
                    if failure is None:
                        ready, never = self._ready()
                        while never:
                            for name in never:
                                self._begin(name, "Skipped")
                                self._finish(name, "Skipped")
                            ready, never = self._ready()
                        for name in ready:
                            if len(running) >= max(1, self.options.workers):
                                break
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
                jobs.stop_all()
                raise
        return failure

    # -------------------------------------------------------------------- steps

    def _execute(self, node: Node) -> str | None:
        """Run one step to its end; its failure reason, or None."""
        try:
            handler = getattr(self, f"_step_{node.type.lower()}")
            handler(node)
        except StepFailure as err:
            reason = str(err)
            self._finish(node.name, "Failed", FailureReason=reason)
            log.error("[%s] Failed: %s", node.name, reason)
            return reason
        except Exception as err:
            # A bug or an unexpected environment problem must still end the record cleanly.
            reason = f"{type(err).__name__}: {err}"
            self._finish(node.name, "Failed", FailureReason=reason)
            log.exception("[%s] Failed", node.name)
            return reason
        return None

    def _job(
        self, node: Node, job_name: str, label: str | None = None, log_name: str | None = None
    ):
        root = self.dir / "jobs" / job_name
        root.mkdir(parents=True, exist_ok=True)
        return jobs.Job(
            store=self.store,
            name=job_name,
            root=root,
            log_path=self.dir / "logs" / f"{log_name or node.name}.log",
            label=label or node.name,
            env=dict(self.job_env),
        )

    def _succeed(self, node: Node, properties: dict, **extra) -> None:
        self._finish(node.name, "Succeeded", properties, **extra)
        log.info("[%s] Succeeded in %.1fs", node.name, self.states[node.name].record["Seconds"])

    def _step_processing(self, node: Node) -> None:
        job_name = f"{node.name}-{self.tail}"
        arguments = self.resolve(node, job_name)
        if self._from_cache(node, arguments):
            return
        job = self._job(node, job_name)
        self.states[node.name].record["LogPath"] = str(job.log_path)
        log.info("[%s] processing job %s (log %s)", node.name, job_name, job.log_path)
        try:
            properties = jobs.run_processing(job, arguments)
        except (jobs.JobFailed, StoreError) as err:
            raise StepFailure(str(err)) from None
        self._save_cache(node, arguments, properties, {})
        self._succeed(node, properties)

    def _step_training(self, node: Node) -> None:
        job_name = f"{node.name}-{self.tail}"
        arguments = self.resolve(node, job_name)
        if self._from_cache(node, arguments):
            return
        hyperparameters, changed = jobs.clamp_epochs(
            arguments.get("HyperParameters") or {}, self.options.max_epochs
        )
        job = self._job(node, job_name)
        self.states[node.name].record["LogPath"] = str(job.log_path)
        log.info("[%s] training job %s (log %s)", node.name, job_name, job.log_path)
        if changed:
            log.info("[%s] --max-epochs: epochs %s -> %s", node.name, *changed["epochs"])
        try:
            result = jobs.run_training(job, {**arguments, "HyperParameters": hyperparameters})
        except (jobs.JobFailed, StoreError) as err:
            raise StepFailure(str(err)) from None
        extra = {"LocalOverrides": changed}
        if result.rule_evaluations:
            extra["RuleEvaluations"] = result.rule_evaluations
        if result.profiler_report is not None:
            extra["ProfilerReport"] = result.profiler_report
        self._save_cache(node, arguments, result.properties, extra)
        self._succeed(node, result.properties, **extra)

    def _step_tuning(self, node: Node) -> None:
        job_name = f"{node.name}-{self.tail}"
        arguments = self.resolve(node, job_name)
        if self._from_cache(node, arguments):
            return

        def run_trial(number: int, trial_name: str, trial_arguments: dict):
            job = self._job(
                node, trial_name, f"{node.name} trial {number}", f"{node.name}-{number:03d}"
            )
            return jobs.run_training(job, trial_arguments)

        tuning = TuningRun(
            step_name=node.name,
            job_name=job_name,
            seed=self.options.seed,
            max_trials=self.options.max_trials,
            max_epochs=self.options.max_epochs,
            workers=self.options.workers,
            run_trial=run_trial,
        )
        try:
            properties, trials = run_tuning(tuning, arguments)
        except (TuningError, StoreError) as err:
            self.states[node.name].record["Trials"] = []
            raise StepFailure(str(err)) from None
        extra = {"Trials": [trial.record() for trial in trials]}
        self._save_cache(node, arguments, properties, extra)
        self._succeed(node, properties, **extra)

    def _step_condition(self, node: Node) -> None:
        try:
            outcome = ex.evaluate_all(node.arguments.get("Conditions") or [], self.context())
        except ex.ExpressionError as err:
            raise StepFailure(str(err)) from None
        taken = "IfSteps" if outcome else "ElseSteps"
        other = "ElseSteps" if outcome else "IfSteps"
        names = [step.get("Name") for step in node.arguments.get(taken) or []]
        skipped = [step.get("Name") for step in node.arguments.get(other) or []]
        log.info(
            "[%s] condition is %s: next %s%s",
            node.name,
            str(outcome).lower(),
            ", ".join(names) or "nothing",
            f"; skipping {', '.join(skipped)}" if skipped else "",
        )
        self._succeed(node, {"Outcome": outcome})

    def _step_fail(self, node: Node) -> None:
        arguments = self.resolve(node)
        message = arguments.get("ErrorMessage")
        raise StepFailure(ex.to_text(message) if message is not None else "FailStep reached")

    def _step_registermodel(self, node: Node) -> None:
        arguments = self.resolve(node)
        group = arguments.get("ModelPackageGroupName")
        if not group:
            raise StepFailure("RegisterModel needs a ModelPackageGroupName")
        containers = (arguments.get("InferenceSpecification") or {}).get("Containers") or []
        model_url = containers[0].get("ModelDataUrl") if containers else None
        metrics = arguments.get("ModelMetrics") or {}
        statistics = (metrics.get("ModelQuality") or {}).get("Statistics") or {}
        content = None
        if statistics.get("S3Uri"):
            try:
                content = json.loads(self.store.read_bytes(statistics["S3Uri"]))
            except (StoreError, ValueError) as err:
                raise StepFailure(f"ModelMetrics.ModelQuality.Statistics: {err}") from None
        package = {
            key: value
            for key, value in arguments.items()
            if key not in ("ModelPackageGroupName", "ModelMetrics")
        }
        package.update(
            {
                "ModelDataUrl": model_url,
                "ModelMetrics": content,
                "ModelMetricsSources": metrics,
                "ExecutionArn": self.arn,
            }
        )
        try:
            record = registry.register(self.store.registry, group, package)
        except registry.RegistryError as err:
            raise StepFailure(str(err)) from None
        log.info(
            "[%s] registered %s version %d (%s)",
            node.name,
            group,
            record["ModelPackageVersion"],
            record["ModelApprovalStatus"],
        )
        properties = {
            **arguments,
            **{
                key: record[key]
                for key in (
                    "ModelPackageName",
                    "ModelPackageGroupName",
                    "ModelPackageVersion",
                    "ModelPackageArn",
                    "ModelPackageStatus",
                    "ModelApprovalStatus",
                    "CreationTime",
                )
            },
        }
        self._succeed(node, properties)

    def _step_model(self, node: Node) -> None:
        arguments = self.resolve(node)
        name = f"{node.name}-{self.tail}"
        properties = {
            **arguments,
            "ModelName": name,
            "ModelArn": jobs.arn("model", name),
            "CreationTime": jobs.now(),
        }
        self._save_resource("models", name, properties)
        self._succeed(node, properties)

    def _step_endpointconfig(self, node: Node) -> None:
        arguments = self.resolve(node)
        name = arguments.get("EndpointConfigName") or f"{node.name}-{self.tail}"
        properties = {
            **arguments,
            "EndpointConfigName": name,
            "EndpointConfigArn": jobs.arn("endpoint-config", name),
            "CreationTime": jobs.now(),
        }
        self._save_resource("endpoint-configs", name, properties)
        self._succeed(node, properties)

    def _step_endpoint(self, node: Node) -> None:
        arguments = self.resolve(node)
        name = arguments.get("EndpointName")
        config_name = arguments.get("EndpointConfigName")
        if not name or not config_name:
            raise StepFailure("an Endpoint step needs EndpointName and EndpointConfigName")
        if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", str(name)):
            raise StepFailure(f"{name!r} is not an endpoint name (letters, digits, hyphens; <= 63)")
        config = self._load_resource("endpoint-configs", config_name)
        variants = config.get("ProductionVariants") or []
        if not variants:
            raise StepFailure(f"endpoint configuration {config_name} has no ProductionVariants")
        if len(variants) > 1:
            log.warning(
                "[%s] %d variants: serving only %s",
                node.name,
                len(variants),
                variants[0].get("VariantName"),
            )
        model = self._load_resource("models", variants[0].get("ModelName"))
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        model_url = container.get("ModelDataUrl")
        try:
            model_path = self.store.path(model_url)
        except StoreError as err:
            raise StepFailure(f"model {model.get('ModelName')}: ModelDataUrl: {err}") from None
        if not model_path.is_file():
            raise StepFailure(f"model data {model_url} is not in the store ({model_path})")
        packages = self._packages_for(model_url)
        package = packages[-1] if packages else None
        path = self.store.endpoints / f"{name}.json"
        previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        stamp = jobs.now()
        record = {
            "EndpointName": name,
            "EndpointArn": jobs.arn("endpoint", name),
            "EndpointConfigName": config_name,
            "ModelName": model.get("ModelName"),
            "ModelDataUrl": model_url,
            "ModelDataPath": str(model_path),
            "Image": container.get("Image"),
            "Environment": container.get("Environment") or {},
            "InstanceType": variants[0].get("InstanceType"),
            "ModelPackageArn": package["ModelPackageArn"] if package else None,
            "ExecutionArn": self.arn,
            "EndpointStatus": "InService",
            "CreationTime": previous.get("CreationTime", stamp) if previous else stamp,
            "LastModifiedTime": stamp,
        }
        _write_json(path, record)
        log.info(
            "[%s] %s endpoint %s (serve-local --store %s --endpoint %s serves it)",
            node.name,
            "updated" if previous else "created",
            name,
            self.store.root,
            name,
        )
        properties = {
            **arguments,
            **{
                key: record[key]
                for key in (
                    "EndpointName",
                    "EndpointArn",
                    "EndpointConfigName",
                    "EndpointStatus",
                    "CreationTime",
                    "LastModifiedTime",
                )
            },
        }
        self._succeed(node, properties)

    def _packages_for(self, model_url: str) -> list[dict]:
        found = []
        root = self.store.registry
        if root.is_dir():
            for group in sorted(p.name for p in root.iterdir() if p.is_dir()):
                found += [
                    v for v in registry.versions(root, group) if v.get("ModelDataUrl") == model_url
                ]
        return sorted(found, key=lambda v: v.get("CreationTime") or "")

    def _save_resource(self, kind: str, name: str, properties: dict) -> None:
        if not name or "/" in name or name.startswith("."):
            raise StepFailure(f"{name!r} is not a usable {kind} name")
        _write_json(self.store.root / kind / f"{name}.json", properties)

    def _load_resource(self, kind: str, name) -> dict:
        path = self.store.root / kind / f"{name}.json"
        if not name or "/" in str(name) or not path.is_file():
            raise StepFailure(f"there is no {kind[:-1].replace('-', ' ')} {name!r} ({path})")
        return json.loads(path.read_text(encoding="utf-8"))

    # -------------------------------------------------------------------- cache

    def _cache_material(self, node: Node, arguments: dict) -> dict | None:
        if node.type not in CACHE_KEYS:
            return None
        attributes = {key: arguments.get(key) for key in CACHE_KEYS[node.type]}
        local: dict = {}
        if node.type == "Processing":
            uris = [
                item["S3Input"]["S3Uri"]
                for item in arguments.get("ProcessingInputs") or []
                if item.get("S3Input")
            ]
        else:
            definition = (
                arguments
                if node.type == "Training"
                else arguments.get("TrainingJobDefinition") or {}
            )
            if node.type == "Tuning":
                attributes["TrainingJobDefinition"] = {
                    key: definition.get(key) for key in _TUNING_DEFINITION_KEYS
                }
                local = {
                    "max_trials": self.options.max_trials,
                    "seed": self.options.seed,
                    "strategy": "random",
                }
            local["max_epochs"] = self.options.max_epochs
            uris = [
                channel["DataSource"]["S3DataSource"]["S3Uri"]
                for channel in definition.get("InputDataConfig") or []
                if channel.get("DataSource", {}).get("S3DataSource")
            ]
        return {
            "Pipeline": self.options.pipeline_name,
            "Step": node.name,
            "Type": node.type,
            "Attributes": attributes,
            "InputDigests": {uri: self.store.digest(uri) for uri in uris},
            "Local": local,
        }

    def _cache_enabled(self, node: Node) -> bool:
        config = node.step.get("CacheConfig") or {}
        return self.options.use_cache and bool(config.get("Enabled"))

    def _cache_path(self, node: Node, arguments: dict) -> Path | None:
        material = self._cache_material(node, arguments)
        if material is None:
            return None
        return self.store.cache / node.name / f"{_digest(material)}.json"

    def _from_cache(self, node: Node, arguments: dict) -> bool:
        if not self._cache_enabled(node):
            return False
        path = self._cache_path(node, arguments)
        if path is None or not path.is_file():
            return False
        entry = json.loads(path.read_text(encoding="utf-8"))
        expire = parse_duration((node.step.get("CacheConfig") or {}).get("ExpireAfter", ""))
        created = datetime.fromisoformat(entry["CreationTime"])
        if expire is not None and datetime.now(timezone.utc) - created > expire:
            log.info("[%s] cache entry expired (%s)", node.name, entry["CreationTime"])
            return False
        missing = [uri for uri in entry.get("Outputs", []) if not self.store.exists(uri)]
        if missing:
            log.info("[%s] cached outputs are gone (%s): running again", node.name, missing[0])
            return False
        source = entry["PipelineExecutionArn"]
        self._finish(
            node.name,
            "Cached",
            entry["Properties"],
            CacheHitResult={"SourcePipelineExecutionArn": source},
            **entry.get("Extra", {}),
        )
        log.info("[%s] Cached: reusing the result of %s", node.name, source.rsplit("/", 1)[-1])
        return True

    def _save_cache(self, node: Node, arguments: dict, properties: dict, extra: dict) -> None:
        if not self._cache_enabled(node):
            return
        path = self._cache_path(node, arguments)
        if path is None:
            return
        if node.type == "Processing":
            outputs = [
                item["S3Output"]["S3Uri"]
                for item in (properties.get("ProcessingOutputConfig") or {}).get("Outputs", [])
                if item.get("S3Output") and self.store.exists(item["S3Output"]["S3Uri"])
            ]
        elif node.type == "Training":
            outputs = [properties["ModelArtifacts"]["S3ModelArtifacts"]]
        else:
            output_path = (arguments.get("TrainingJobDefinition") or {}).get("OutputDataConfig", {})
            best = properties["BestTrainingJob"]["TrainingJobName"]
            outputs = [
                join_uri(output_path.get("S3OutputPath", ""), best, "output", "model.tar.gz")
            ]
        _write_json(
            path,
            {
                "PipelineExecutionArn": self.arn,
                "StepName": node.name,
                "CreationTime": jobs.now(),
                "Properties": properties,
                "Extra": extra,
                "Outputs": outputs,
            },
        )


def _write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    temporary.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def run(definition: dict, options: Options) -> Outcome:
    """Check, then execute `definition`; the outcome (its record says Succeeded or Failed).

    DefinitionError (or pipeline.errors.UsageError for a bad --param) before anything runs.
    """
    nodes = check_definition(definition)
    if options.workers < 1:
        raise DefinitionError("--workers must be at least 1")
    return Execution(definition, options, nodes).run()
