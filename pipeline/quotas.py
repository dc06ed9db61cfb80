"""The account's SageMaker quotas against what an execution will ask for, before it starts.

New accounts often have a quota of 0 for GPU training instances; without this check the
first training job fails after data preparation, and its RESOURCE_LIMIT retry waits too.
`needs()` derives the instances an execution uses from its parameter values (stdlib only);
`check()` reads the quotas from Service Quotas and stops at the first that is too small.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipeline.errors import UsageError, one_line

log = logging.getLogger(__name__)

SERVICE_CODE = "sagemaker"


@dataclass(frozen=True)
class Need:
    quota_name: str  # as Service Quotas names it, e.g. "ml.g5.2xlarge for training job usage"
    count: int
    why: str  # the parameters that set the count


def needs(values: dict) -> list[Need]:
    """The instances of each type an execution with these parameter values runs at once.

    Parameters the definition does not declare add nothing (another pipeline's definition).
    """
    wanted = []
    if "TrainingInstanceType" in values:
        trials = int(values.get("MaxParallelTuningJobs", 1))
        instances = int(values.get("TrainingInstanceCount", 1))
        count, why = (
            (trials, "MaxParallelTuningJobs")
            if trials >= instances
            else (instances, "TrainingInstanceCount")
        )
        wanted.append(Need(f"{values['TrainingInstanceType']} for training job usage", count, why))
    processing: dict[str, str] = {}
    for name in ("ProcessingInstanceType", "EvaluationInstanceType"):
        if name in values:
            processing.setdefault(values[name], name)
    wanted += [Need(f"{kind} for processing job usage", 1, why) for kind, why in processing.items()]
    if "EndpointInstanceType" in values:
        wanted.append(
            Need(f"{values['EndpointInstanceType']} for endpoint usage", 1, "EndpointInstanceType")
        )
    return wanted


def _quota_values(client) -> dict[str, tuple[float, str]]:
    """QuotaName -> (value, quota code): the account's applied values over AWS's defaults."""
    found: dict[str, tuple[float, str]] = {}
    for operation in ("list_aws_default_service_quotas", "list_service_quotas"):
        for page in client.get_paginator(operation).paginate(ServiceCode=SERVICE_CODE):
            for quota in page.get("Quotas", []):
                found[quota["QuotaName"]] = (quota["Value"], quota["QuotaCode"])
    return found


def check(aws, wanted: list[Need]) -> None:
    """UsageError naming the first quota below what is wanted; a warning if none can be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not wanted:
        return
    try:
        quotas = _quota_values(aws.client("service-quotas"))
    except (ClientError, BotoCoreError) as exc:
        log.warning(
            "could not read the SageMaker quotas (%s); starting without the check", one_line(exc)
        )
        return
    for need in wanted:
        if need.quota_name not in quotas:
            log.warning(
                "no SageMaker quota named %r in %s: not checked", need.quota_name, aws.region
            )
            continue
        value, code = quotas[need.quota_name]
        if value < need.count:
            raise UsageError(
                f"the SageMaker quota '{need.quota_name}' is {value:g} in {aws.region}, and this "
                f"execution needs {need.count} ({need.why}): request {need.count} with `aws "
                f"service-quotas request-service-quota-increase --service-code {SERVICE_CODE} "
                f"--quota-code {code} --desired-value {need.count}` (or in the Service Quotas "
                "console), pick another instance type with --param, or pass --skip-quota-check"
            )
