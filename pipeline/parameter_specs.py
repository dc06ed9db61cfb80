"""Every pipeline parameter's default and the values it accepts, declared once (stdlib only).

pipeline/parameters.py builds the SageMaker parameters from these defaults; parameter_values.py
checks `--param` values of `start`, `schedule` and `run-local` against the bounds before
anything runs, so `ImageSize=-5` is refused in one line instead of failing every trial.
The bounds are what the jobs accept (train.py's, preprocess.py's) and what SageMaker's API
accepts (botocore's service model: tests/unit/test_parameter_specs.py compares them).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from dogbreed_jobs import contract

# AWS: a training job's MaxRuntimeInSeconds is at most 28 days (CreateTrainingJob,
# StoppingCondition); SageMaker's default, 24 h, is this pipeline's default too.
MAX_TRAINING_SECONDS = 28 * 24 * 3600


@dataclass(frozen=True)
class Spec:
    # None where the default comes from the build's settings (InputDataUrl, EndpointName...).
    default: int | float | bool | str | None
    low: float | None = None
    high: float | None = None
    pattern: str | None = None  # a string value must match it whole
    choices: tuple[str, ...] = ()
    # What the value means, for the error message ("the crop side in pixels").
    meaning: str = ""

    def problem(self, value) -> str | None:
        """Why `value` (already of the declared type) is not accepted, or None."""
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            too_low = self.low is not None and value < self.low
            too_high = self.high is not None and value > self.high
            if too_low or too_high or not math.isfinite(value):
                return f"must be {self.range_text()}"
        elif isinstance(value, str):
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                return f"must match {self.pattern}"
        return None

    def range_text(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.high is None:
            return f"at least {low}"
        if self.low is None:
            return f"at most {high}"
        return f"between {low} and {high}"


def _number(value) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


_IMAGE_LOW, _IMAGE_HIGH = contract.IMAGE_SIZE_RANGE

SPECS: dict[str, Spec] = {
    # An S3 prefix holding train/ valid/ test/, or one .zip of them (dogImages.zip).
    "InputDataUrl": Spec(None, pattern=r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?"),
    # Pre-resizing once in preprocessing removes most per-epoch JPEG decode cost; 0 keeps
    # every image's size.
    "MaxImageSide": Spec(320, 0, 8192, meaning="the shorter side in pixels after preparation"),
    "ImageSize": Spec(224, _IMAGE_LOW, _IMAGE_HIGH, meaning="the crop side in pixels"),
    "Pretrained": Spec(True),
    # torchvision's weights file (or a prefix holding one) for jobs without internet; the
    # default is a folder of the code bundle without one (dogbreed_jobs/contract.py).
    "PretrainedWeightsUrl": Spec(None, pattern=r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?"),
    "ProcessingInstanceType": Spec("ml.c5.2xlarge"),
    "TrainingInstanceType": Spec("ml.g5.2xlarge"),
    "TrainingInstanceCount": Spec(1, 1, meaning="instances of TrainModel"),
    "MaxTuningJobs": Spec(8, 1, meaning="tuning trials"),
    "MaxParallelTuningJobs": Spec(2, 1, meaning="trials at once"),
    "EvaluationInstanceType": Spec("ml.m5.xlarge"),
    "AccuracyThreshold": Spec(0.7, 0, 1, meaning="the test accuracy a model needs"),
    # The endpoint's `auto` serves bf16 (on CPUs with native bf16) only for a model whose bf16
    # top-1 equals fp32's on at least this share of the test split; 1: on every test image.
    "Bf16MinAgreement": Spec(1.0, 0, 1, meaning="the share of test images bf16 must keep"),
    # The champion/challenger gate (dogbreed_jobs/champion_gate.py): the metric of
    # evaluation.json on which a new model must not be worse than the serving one ("none":
    # no comparison), and by how much it may be (0: not at all).
    "ChampionMetric": Spec("accuracy", choices=(*contract.GATE_METRICS, contract.GATE_OFF)),
    "ChampionTolerance": Spec(
        0.0, 0, 1, meaning="how much worse than the serving model a new one may be"
    ),
    # The accuracy condition is the automated gate before registration and deployment;
    # PendingManualApproval records the version for a human to approve in the registry.
    "ModelApprovalStatus": Spec("Approved", choices=("Approved", "PendingManualApproval")),
    # SageMaker's rule for endpoint names (CreateEndpoint's EndpointName).
    "EndpointName": Spec(None, pattern=r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"),
    "EndpointInstanceType": Spec(None),
    # Capacity (README, "Safe releases"): SageMaker spreads an endpoint's instances over the
    # Availability Zones of its subnets, so 2 or more survive a zone's outage; 1 is the
    # cheapest start. Autoscaling keeps between the minimum and the maximum (min == max: a
    # fixed fleet) by target tracking on invocations per instance per minute; AWS's formula
    # for the target is peak requests per second of one instance x 0.5 (safety) x 60: ~80 ms
    # an image with bf16 on 2 vCPUs gives 12.5 x 0.5 x 60 = 375.
    "EndpointInstanceCount": Spec(1, 1, meaning="instances of the endpoint's new fleet"),
    "EndpointMinInstances": Spec(1, 1, meaning="the fewest instances autoscaling keeps"),
    "EndpointMaxInstances": Spec(4, 1, meaning="the most instances autoscaling adds"),
    "InvocationsPerInstanceTarget": Spec(
        375.0, 1, meaning="the invocations per instance per minute autoscaling aims at"
    ),
    # The blue/green bake: the new fleet takes all traffic under the auto-rollback alarms
    # while the old one waits to take it back (SageMaker's bound: an hour).
    "EndpointBakeSeconds": Spec(600, 0, 3600, meaning="seconds the new fleet is watched"),
    # Each trial's and TrainModel's MaxRuntimeInSeconds (with spot also its wait for
    # capacity): a job that hangs stops billing after this long.
    "MaxTrainingSeconds": Spec(86_400, 1, MAX_TRAINING_SECONDS, meaning="seconds a job may run"),
    # Off by default: a rule's finding is reported (rules.json, report.md) but registers
    # the model anyway, as service mode's rules never stop an execution; on, any
    # IssuesFound ends the execution before registration, naming the rule.
    "RuleIssuesBlockRegistration": Spec(False),
    # Any tracking URI MLflow takes (the default is the build's ARN).
    "MlflowTrackingUri": Spec(None),
}


def default(name: str):
    return SPECS[name].default


def problems(values: dict, given: set[str]) -> list[str]:
    """What is wrong with the `given` parameters among `values` (name -> typed value: the
    definition's defaults, overridden), each as one `Name=value: why` line: a value its spec
    refuses, or two values that contradict each other. Names without a spec pass."""
    found = []
    for name in sorted(given):
        spec, value = SPECS.get(name), values.get(name)
        why = spec.problem(value) if spec else None
        if why:
            meaning = f" ({spec.meaning})" if spec.meaning else ""
            found.append(f"{name}={_shown(value)}: {name}{meaning} {why}")
    trials, parallel = values.get("MaxTuningJobs"), values.get("MaxParallelTuningJobs")
    if {"MaxTuningJobs", "MaxParallelTuningJobs"} & given:
        if _is_number(trials) and _is_number(parallel) and parallel > trials:
            found.append(
                f"MaxParallelTuningJobs={parallel}: more trials at once than MaxTuningJobs={trials}"
            )
    side, crop = values.get("MaxImageSide"), values.get("ImageSize")
    if {"MaxImageSide", "ImageSize"} & given:
        if _is_number(side) and _is_number(crop) and 0 < side < crop:
            found.append(
                f"MaxImageSide={side}: smaller than ImageSize={crop}, so every crop would be "
                "upscaled from a shrunken image; use at least ImageSize, or 0 to keep the size"
            )
    low, count, high = (
        values.get(name)
        for name in ("EndpointMinInstances", "EndpointInstanceCount", "EndpointMaxInstances")
    )
    capacity = {"EndpointMinInstances", "EndpointInstanceCount", "EndpointMaxInstances"}
    if capacity & given and all(_is_number(v) for v in (low, count, high)):
        if not low <= count <= high:
            found.append(
                f"EndpointMinInstances={low}, EndpointInstanceCount={count}, "
                f"EndpointMaxInstances={high}: they must satisfy minimum <= count <= maximum"
            )
    return found


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
