"""The properties of each step type, built in one place: the Describe*-like dicts that
`Get Steps.<name>...` reads.

The job code calls these builders with the values a run produced; `placeholders(step)`
calls the same builders with "" and `expressions.OPEN` (anything below is accepted: a list
whose length only the run knows), so the up-front check of a definition (plan.py) accepts
exactly the paths a run will have.
"""

from __future__ import annotations

from pipeline.local import expressions as ex

MODEL_PACKAGE_FIELDS = (
    "ModelPackageName",
    "ModelPackageGroupName",
    "ModelPackageVersion",
    "ModelPackageArn",
    "ModelPackageStatus",
    "ModelApprovalStatus",
    "CreationTime",
)
_RANGE_KINDS = ("ContinuousParameterRanges", "IntegerParameterRanges", "CategoricalParameterRanges")


def processing_job(arguments: dict, *, name, arn, status, created, ended) -> dict:
    """DescribeProcessingJob."""
    return {
        **arguments,
        "ProcessingJobName": name,
        "ProcessingJobArn": arn,
        "ProcessingJobStatus": status,
        "ExitMessage": "",
        "CreationTime": created,
        "ProcessingStartTime": created,
        "ProcessingEndTime": ended,
        "LastModifiedTime": ended,
    }


def final_metric(name, value, timestamp) -> dict:
    """An item of FinalMetricDataList."""
    return {"MetricName": name, "Value": value, "Timestamp": timestamp}


def training_job(
    arguments: dict,
    *,
    name,
    arn,
    status,
    model_uri,
    metrics: list,
    created,
    ended,
    seconds,
    rule_statuses=None,
    profiler_statuses=None,
) -> dict:
    """DescribeTrainingJob; the rule statuses only when the job has such rules."""
    properties = {
        **arguments,
        "TrainingJobName": name,
        "TrainingJobArn": arn,
        "TrainingJobStatus": status,
        "SecondaryStatus": status,
        "ModelArtifacts": {"S3ModelArtifacts": model_uri},
        "FinalMetricDataList": metrics,
        "CreationTime": created,
        "TrainingStartTime": created,
        "TrainingEndTime": ended,
        "LastModifiedTime": ended,
        "TrainingTimeInSeconds": seconds,
        "BillableTimeInSeconds": seconds,
    }
    if rule_statuses is not None:
        properties["DebugRuleEvaluationStatuses"] = rule_statuses
    if profiler_statuses is not None:
        properties["ProfilerRuleEvaluationStatuses"] = profiler_statuses
    return properties


def objective_metric(kind, name, value) -> dict:
    """FinalHyperParameterTuningJobObjectiveMetric."""
    return {"Type": kind, "MetricName": name, "Value": value}


def training_job_summary(
    *, name, arn, created, ended, status, tuned: dict, objective=None, failure=None
) -> dict:
    """An item of TrainingJobSummaries (and BestTrainingJob); `objective` from
    objective_metric, None when the trial reported none."""
    summary = {
        "TrainingJobName": name,
        "TrainingJobArn": arn,
        "CreationTime": created,
        "TrainingStartTime": created,
        "TrainingEndTime": ended,
        "TrainingJobStatus": status,
        "TunedHyperParameters": dict(tuned),
        "ObjectiveStatus": "Succeeded" if objective is not None else "Failed",
    }
    if objective is not None:
        summary["FinalHyperParameterTuningJobObjectiveMetric"] = objective
    if failure:
        summary["FailureReason"] = failure
    return summary


def tuning_job(
    arguments: dict,
    *,
    name,
    arn,
    status,
    created,
    ended,
    status_counters,
    objective_counters,
    best: dict,
    summaries,
) -> dict:
    """DescribeHyperParameterTuningJob."""
    return {
        **arguments,
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobArn": arn,
        "HyperParameterTuningJobStatus": status,
        "CreationTime": created,
        "HyperParameterTuningEndTime": ended,
        "LastModifiedTime": ended,
        "TrainingJobStatusCounters": status_counters,
        "ObjectiveStatusCounters": objective_counters,
        "BestTrainingJob": best,
        "TrainingJobSummaries": summaries,
    }


def condition(outcome) -> dict:
    return {"Outcome": outcome}


def register_model(arguments: dict, package: dict) -> dict:
    """A RegisterModel step's properties: its arguments and the registered version."""
    return {**arguments, **{key: package[key] for key in MODEL_PACKAGE_FIELDS}}


def model(arguments: dict, *, name, arn, created) -> dict:
    """DescribeModel."""
    return {**arguments, "ModelName": name, "ModelArn": arn, "CreationTime": created}


def endpoint_config(arguments: dict, *, name, arn, created) -> dict:
    """DescribeEndpointConfig."""
    return {
        **arguments,
        "EndpointConfigName": name,
        "EndpointConfigArn": arn,
        "CreationTime": created,
    }


def range_names(tuning_config: dict) -> list[str]:
    """The hyperparameters a tuning job tunes (the keys of TunedHyperParameters)."""
    ranges = tuning_config.get("ParameterRanges") or {}
    return [spec["Name"] for kind in _RANGE_KINDS for spec in ranges.get(kind) or []]


def profiled(arguments: dict) -> bool:
    """Whether a training job produces the ProfilerReport (and its rule statuses)."""
    config = arguments.get("ProfilerConfig") or {}
    return bool(arguments.get("ProfilerRuleConfigurations")) and not config.get("DisableProfiler")


def placeholders(step: dict) -> dict:
    """The properties a step of the definition will have, for checking references up front.

    A processing step's PropertyFiles are not properties of the job: they are what
    `Std:JsonGet` names (`Steps.X.PropertyFiles.Name`), so the check must find them too.
    """
    kind = step.get("Type")
    args = step.get("Arguments") or {}
    blank = {"name": "", "arn": "", "status": "", "created": ""}
    if kind == "Processing":
        shape = processing_job(args, **blank, ended="")
        shape["PropertyFiles"] = {
            pf.get("PropertyFileName"): "" for pf in step.get("PropertyFiles") or []
        }
        return shape
    if kind == "Training":
        metrics = (args.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
        return training_job(
            args,
            **blank,
            model_uri="",
            metrics=[final_metric(m.get("Name"), "", "") for m in metrics],
            ended="",
            seconds="",
            rule_statuses=ex.OPEN if args.get("DebugRuleConfigurations") else None,
            profiler_statuses=ex.OPEN if profiled(args) else None,
        )
    if kind == "Tuning":
        config = args.get("HyperParameterTuningJobConfig") or {}
        best = training_job_summary(
            **blank,
            ended="",
            tuned=dict.fromkeys(range_names(config), ""),
            objective=objective_metric("", "", ""),
        )
        return tuning_job(
            args,
            **blank,
            ended="",
            status_counters=ex.OPEN,
            objective_counters=ex.OPEN,
            best=best,
            summaries=ex.OPEN,
        )
    if kind == "Condition":
        return condition("")
    if kind == "RegisterModel":
        return register_model(args, dict.fromkeys(MODEL_PACKAGE_FIELDS, ""))
    if kind == "Model":
        return model(args, name="", arn="", created="")
    return {}
