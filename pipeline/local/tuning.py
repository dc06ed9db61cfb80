"""A tuning step run locally: seeded random search over the declared ranges.

SageMaker's Bayesian (or Hyperband, Grid) strategy is replaced by random search drawn from
`random.Random(f"{seed}:{step name}")`: the same seed and definition give the same trials,
whatever `--workers` is, so a rerun is reproducible and its cache key stable. Ranges are
honoured as SageMaker defines them:

- Continuous: uniform for Linear, log-uniform for Logarithmic, `1 - log-uniform(1 - x)` for
  ReverseLogarithmic; Auto is Logarithmic when the range is positive and spans a factor of
  10 or more, else Linear. Values are rounded to 6 significant digits, inside the range.
- Integer: the same scalings over whole numbers, both ends included.
- Categorical: one of the Values, verbatim (the SDK JSON-quotes them: `"\"64\""`).

The result mirrors DescribeHyperParameterTuningJob: `BestTrainingJob` with
`TunedHyperParameters` (the sampled strings, JSON quoting kept, as SageMaker returns them)
and `FinalHyperParameterTuningJobObjectiveMetric`, and `TrainingJobSummaries` best first.
A failed trial is counted and kept in the record; the step fails only when no trial
reports the objective metric.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.local import properties
from pipeline.local.records import arn, now
from pipeline.local.supervisor import JobFailed
from pipeline.local.training_job import TrainingResult, clamp_epochs

log = logging.getLogger("pipeline.local")

# TrainingJobDefinition fields a trial's CreateTrainingJob takes as they are.
_PASSED_THROUGH = (
    "AlgorithmSpecification",
    "CheckpointConfig",
    "Environment",
    "InputDataConfig",
    "OutputDataConfig",
    "RoleArn",
    "StoppingCondition",
    "VpcConfig",
    "EnableNetworkIsolation",
)


class TuningError(Exception):
    """The tuning job cannot start or produced no usable trial; the message is the reason."""


@dataclass
class Trial:
    number: int
    job_name: str
    tuned: dict[str, str]  # TunedHyperParameters: as sampled
    overrides: dict = field(default_factory=dict)  # local changes (epochs clamped)
    status: str = "InProgress"
    objective: float | None = None
    result: TrainingResult | None = None
    failure: str | None = None
    started: str | None = None
    ended: str | None = None
    log_path: Path | None = None

    def summary(self, objective: dict) -> dict:
        metric = None
        if self.objective is not None:
            metric = properties.objective_metric(
                objective["Type"], objective["MetricName"], self.objective
            )
        return properties.training_job_summary(
            name=self.job_name,
            arn=arn("training-job", self.job_name),
            created=self.started,
            ended=self.ended,
            status=self.status,
            tuned=self.tuned,
            objective=metric,
            failure=self.failure,
        )

    def record(self) -> dict:
        return {
            "Trial": self.number,
            "TrainingJobName": self.job_name,
            "Status": self.status,
            "TunedHyperParameters": self.tuned,
            "LocalOverrides": self.overrides,
            "ObjectiveValue": self.objective,
            "StartTime": self.started,
            "EndTime": self.ended,
            "LogPath": str(self.log_path) if self.log_path else None,
            "FailureReason": self.failure,
        }


# ----------------------------------------------------------------------------- ranges


def _scaled(low: float, high: float, scaling: str, draw: float) -> float:
    """The point at `draw` in [0, 1) along [low, high] under `scaling`."""
    if scaling == "Auto":
        scaling = "Logarithmic" if low > 0 and high / low >= 10 else "Linear"
    if scaling == "Linear" or low == high:
        return low + (high - low) * draw
    if scaling == "Logarithmic":
        if low <= 0:
            raise TuningError(f"Logarithmic scaling needs MinValue > 0, got {low}")
        return math.exp(math.log(low) + (math.log(high) - math.log(low)) * draw)
    if scaling == "ReverseLogarithmic":
        if not 0 <= low < high < 1:
            raise TuningError("ReverseLogarithmic scaling needs 0 <= MinValue < MaxValue < 1")
        return 1 - math.exp(math.log(1 - high) + (math.log(1 - low) - math.log(1 - high)) * draw)
    raise TuningError(f"unknown ScalingType {scaling!r}")


def _bounds(spec: dict, kind: type) -> tuple:
    try:
        low, high = kind(spec["MinValue"]), kind(spec["MaxValue"])
    except (KeyError, TypeError, ValueError):
        raise TuningError(
            f"range {spec.get('Name')!r}: MinValue and MaxValue must be {kind.__name__}s, "
            f"got {spec.get('MinValue')!r} and {spec.get('MaxValue')!r}"
        ) from None
    if low > high:
        raise TuningError(f"range {spec['Name']!r}: MinValue {low} is above MaxValue {high}")
    return low, high


def sample(ranges: dict, rng: random.Random) -> dict[str, str]:
    """One point of the search space, as the hyperparameter strings a trial receives."""
    point: dict[str, str] = {}
    for spec in ranges.get("ContinuousParameterRanges") or []:
        low, high = _bounds(spec, float)
        value = _scaled(low, high, spec.get("ScalingType", "Auto"), rng.random())
        value = min(max(float(f"{value:.6g}"), low), high)
        point[spec["Name"]] = repr(value)
    for spec in ranges.get("IntegerParameterRanges") or []:
        low, high = _bounds(spec, int)
        # Draw over [low, high + 1) and floor, so both ends are as likely as any other value.
        value = _scaled(low, high + 1, spec.get("ScalingType", "Auto"), rng.random())
        point[spec["Name"]] = str(min(max(math.floor(value), low), high))
    for spec in ranges.get("CategoricalParameterRanges") or []:
        values = spec.get("Values") or []
        if not values:
            raise TuningError(f"categorical range {spec.get('Name')!r} has no Values")
        point[spec["Name"]] = rng.choice(values)
    return point


# ----------------------------------------------------------------------------- running


@dataclass
class TuningRun:
    step_name: str
    job_name: str
    seed: int
    max_trials: int | None  # --max-trials
    max_epochs: int | None  # --max-epochs
    workers: int
    # (trial number, trial job name, arguments) -> the trial's training result
    run_trial: Callable[[int, str, dict], TrainingResult]


def run_tuning(
    run: TuningRun,
    arguments: dict,
    on_trial: Callable[[list[Trial]], None] = lambda trials: None,
) -> tuple[dict, list[Trial]]:
    """DescribeHyperParameterTuningJob-like properties, and the trials.

    `on_trial(trials)` is called whenever a trial starts or ends (the record's progress).
    """
    config = arguments.get("HyperParameterTuningJobConfig") or {}
    if arguments.get("TrainingJobDefinitions"):
        raise TuningError("TrainingJobDefinitions (several algorithms) is not supported locally")
    definition = arguments.get("TrainingJobDefinition")
    if not definition:
        raise TuningError("the tuning step has no TrainingJobDefinition")
    objective = config.get("HyperParameterTuningJobObjective") or {}
    if objective.get("Type") not in ("Maximize", "Minimize") or not objective.get("MetricName"):
        raise TuningError("HyperParameterTuningJobObjective needs a MetricName and Type")
    limits = config.get("ResourceLimits") or {}
    declared = int(limits.get("MaxNumberOfTrainingJobs") or 1)
    count = run.max_trials if run.max_trials is not None else declared
    parallel = max(1, min(run.workers, int(limits.get("MaxParallelTrainingJobs") or 1), count))
    strategy = config.get("Strategy", "Bayesian")
    log.info(
        "[%s] %d trial(s), %d at a time: seeded random search (seed %d) in place of %s",
        run.step_name,
        count,
        parallel,
        run.seed,
        strategy,
    )
    rng = random.Random(f"{run.seed}:{run.step_name}")  # noqa: S311  # nosec B311 - reproducible, not secret
    ranges = dict(config.get("ParameterRanges") or {})
    for kind, specs in (definition.get("HyperParameterRanges") or {}).items():
        ranges[kind] = [*(ranges.get(kind) or []), *specs]
    static = dict(definition.get("StaticHyperParameters") or {})
    resources = definition.get("HyperParameterTuningResourceConfig") or definition.get(
        "ResourceConfig"
    )
    trials = []
    for number in range(1, count + 1):
        tuned = sample(ranges, rng)
        trials.append(Trial(number, f"{run.job_name}-{number:03d}", tuned))

    def launch(trial: Trial) -> Trial:
        hyperparameters, trial.overrides = clamp_epochs({**static, **trial.tuned}, run.max_epochs)
        job_arguments = {k: definition[k] for k in _PASSED_THROUGH if k in definition}
        job_arguments["HyperParameters"] = hyperparameters
        if resources:
            job_arguments["ResourceConfig"] = resources
        shown = " ".join(f"{k}={v}" for k, v in trial.tuned.items())
        if trial.overrides:
            shown += (
                " (" + ", ".join(f"{k} {a}->{b}" for k, (a, b) in trial.overrides.items()) + ")"
            )
        log.info(
            "[%s] trial %d/%d %s: %s", run.step_name, trial.number, count, trial.job_name, shown
        )
        trial.started = now()
        on_trial(trials)
        try:
            trial.result = run.run_trial(trial.number, trial.job_name, job_arguments)
        except JobFailed as err:
            trial.status, trial.failure, trial.ended = "Failed", str(err), now()
            log.warning("[%s] trial %d failed: %s", run.step_name, trial.number, err)
            on_trial(trials)
            return trial
        trial.ended = now()
        trial.status = "Completed"
        trial.log_path = trial.result.log_path
        for metric in trial.result.properties.get("FinalMetricDataList", []):
            if metric["MetricName"] == objective["MetricName"]:
                trial.objective = metric["Value"]
        if trial.objective is None:
            log.warning(
                "[%s] trial %d printed no %s",
                run.step_name,
                trial.number,
                objective["MetricName"],
            )
        else:
            log.info(
                "[%s] trial %d: %s=%s",
                run.step_name,
                trial.number,
                objective["MetricName"],
                trial.objective,
            )
        on_trial(trials)
        return trial

    started = now()
    if parallel == 1:
        for trial in trials:
            launch(trial)
    else:
        with ThreadPoolExecutor(parallel, thread_name_prefix=run.step_name) as pool:
            list(pool.map(launch, trials))

    scored = [trial for trial in trials if trial.objective is not None]
    if not scored:
        first = next((t.failure for t in trials if t.failure), None)
        raise TuningError(
            f"no training job reported {objective['MetricName']}"
            + (f"; first failure: {first}" if first else "")
        )
    sign = 1 if objective["Type"] == "Maximize" else -1
    # Best first; among equals the earlier trial, so a rerun picks the same job.
    ranked = sorted(scored, key=lambda t: (-sign * t.objective, t.number))
    best = ranked[0]
    unscored = [trial for trial in trials if trial.objective is None]
    log.info(
        "[%s] best: trial %d %s %s=%s (%s)",
        run.step_name,
        best.number,
        best.job_name,
        objective["MetricName"],
        best.objective,
        " ".join(f"{k}={v}" for k, v in best.tuned.items()),
    )
    failed = sum(1 for trial in trials if trial.status == "Failed")
    ended = now()
    tuning = properties.tuning_job(
        arguments,
        name=run.job_name,
        arn=arn("hyper-parameter-tuning-job", run.job_name),
        status="Completed",
        created=started,
        ended=ended,
        status_counters={
            "Completed": len(trials) - failed,
            "InProgress": 0,
            "RetryableError": 0,
            "NonRetryableError": failed,
            "Stopped": 0,
        },
        objective_counters={
            "Succeeded": len(scored),
            "Pending": 0,
            "Failed": len(trials) - len(scored),
        },
        best=best.summary(objective),
        summaries=[trial.summary(objective) for trial in [*ranked, *unscored]],
    )
    return tuning, trials
