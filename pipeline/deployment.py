"""Approve, reject and deploy a registered model version on SageMaker (`approve`).

A version is deployed the way the pipeline's own deploy steps deploy: the settings (role,
VPC, network isolation, instance type, KMS key, endpoint name, model package group) come
from the definition the pipeline was upserted with, so an approval later in Studio or from
the CLI serves the model exactly as an Approved execution would have. The endpoint
configuration is named `<EndpointName>-v<version>at<unix time>`, which `teardown` knows as
the pipeline's own, like the deploy step's `<EndpointName>-<execution id>`.

Everything that can refuse is checked before anything changes: the version exists and is
in the pipeline's group, and the endpoint is neither Failed nor in the middle of a change.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time

from pipeline.aws import Aws, describe_pipeline, is_missing, is_pipeline_config
from pipeline.definition_json import iter_steps
from pipeline.errors import CliError, UsageError

log = logging.getLogger(__name__)

PACKAGE_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/"
    r"(?P<group>[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62})/(?P<version>\d+)$"
)
# An endpoint in these states is changing: an update now would be refused by SageMaker or
# race the change under way.
BUSY_STATUSES = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
POLL_SECONDS = 30
MAX_NAME = 63


class DeployFailed(CliError):
    """The endpoint did not end up serving the new configuration; the message says what did."""

    exit_code = 1


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the pipeline's deploy steps deploy, read from its definition."""

    group: str
    endpoint_name: str
    instance_type: str
    role_arn: str
    vpc_config: dict | None = None
    network_isolation: bool = False
    kms_key_id: str | None = None


def _resolved(value, defaults: dict):
    """A literal, or a parameter's default; None for anything only an execution knows."""
    if isinstance(value, dict):
        reference = value.get("Get")
        if isinstance(reference, str) and reference.startswith("Parameters."):
            return defaults.get(reference.removeprefix("Parameters."))
        return None
    return value


def settings_of(description: dict) -> Settings:
    """The deploy settings of a described pipeline (pipeline.aws.describe_pipeline)."""
    definition = description.get("Definition") or {}
    defaults = {p.get("Name"): p.get("DefaultValue") for p in definition.get("Parameters") or []}
    steps: dict[str, dict] = {}
    for entry in iter_steps(definition):
        steps.setdefault(entry.type, entry.arguments)
    kinds = ("RegisterModel", "Model", "EndpointConfig", "Endpoint")
    missing = [kind for kind in kinds if kind not in steps]
    if missing:
        raise UsageError(
            f"pipeline {description.get('PipelineName')} has no {', '.join(missing)} step: "
            "it is not a dogbreed-pipeline definition; upsert this project's definition first"
        )
    model, config = steps["Model"], steps["EndpointConfig"]
    variant = (config.get("ProductionVariants") or [{}])[0]
    return Settings(
        group=_resolved(steps["RegisterModel"].get("ModelPackageGroupName"), defaults),
        endpoint_name=_resolved(steps["Endpoint"].get("EndpointName"), defaults),
        instance_type=_resolved(variant.get("InstanceType"), defaults),
        role_arn=_resolved(model.get("ExecutionRoleArn"), defaults) or description["RoleArn"],
        vpc_config=model.get("VpcConfig"),
        network_isolation=bool(model.get("EnableNetworkIsolation")),
        kms_key_id=_resolved(config.get("KmsKeyId"), defaults),
    )


def pipeline_settings(aws: Aws, pipeline_name: str, **overrides) -> Settings:
    settings = settings_of(describe_pipeline(aws, pipeline_name))
    given = {key: value for key, value in overrides.items() if value is not None}
    return dataclasses.replace(settings, **given)


def version_number(version: str, group: str) -> int:
    """--model-version's number: a number, or a model package ARN that must be of `group`."""
    match = PACKAGE_ARN_RE.match(version)
    if match:
        if match["group"] != group:
            raise UsageError(
                f"{version} is a version of model package group {match['group']}, not of "
                f"{group}, which this pipeline registers to: pass --model-package-group "
                f"{match['group']} if you mean it"
            )
        return int(match["version"])
    if not version.isdigit() or int(version) < 1:
        raise UsageError(
            f"--model-version {version!r} is neither a version number nor a model package ARN"
        )
    return int(version)


def package_arn(aws: Aws, group: str, version: str) -> str:
    """The ARN of `version` (a number, or an ARN that must be of `group`)."""
    if PACKAGE_ARN_RE.match(version):
        version_number(version, group)
        return version
    number = version_number(version, group)
    partition = aws.session.get_partition_for_region(aws.region)
    account = aws.account_id()
    return f"arn:{partition}:sagemaker:{aws.region}:{account}:model-package/{group}/{number}"


def describe_version(aws: Aws, arn: str) -> dict:
    from botocore.exceptions import ClientError

    try:
        return aws.sagemaker.describe_model_package(ModelPackageName=arn)
    except ClientError as exc:
        if is_missing(exc):
            group, version = arn.rsplit("/", 2)[-2:]
            raise UsageError(
                f"model package group {group} has no version {version} in {aws.region} "
                "(the registry in SageMaker Studio lists them)"
            ) from None
        raise


def set_approval(aws: Aws, arn: str, status: str, description: str | None) -> None:
    request = {"ModelPackageArn": arn, "ModelApprovalStatus": status}
    if description:
        request["ApprovalDescription"] = description
    aws.sagemaker.update_model_package(**request)


def describe_endpoint(aws: Aws, name: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return aws.sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


def served_model_data(aws: Aws, endpoint: dict) -> str | None:
    """The ModelDataUrl of the model the endpoint's configuration serves."""
    config = aws.sagemaker.describe_endpoint_config(
        EndpointConfigName=endpoint["EndpointConfigName"]
    )
    variants = config.get("ProductionVariants") or [{}]
    model = aws.sagemaker.describe_model(ModelName=variants[0]["ModelName"])
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    return container.get("ModelDataUrl")


def check_endpoint(endpoint: dict | None, name: str, ours=is_pipeline_config) -> None:
    """Refuse an endpoint that cannot take an update now, or that is not the pipeline's.

    `ours(name, config)` tells the pipeline's configuration names (run-local's differ).
    """
    if endpoint is None:
        return
    status = endpoint.get("EndpointStatus")
    if status == "Failed":
        raise UsageError(
            f"endpoint {name} is Failed ({endpoint.get('FailureReason') or 'no reason given'}): "
            "SageMaker cannot update it; `dogbreed-pipeline teardown` deletes it, then approve "
            "again to create it"
        )
    if status in BUSY_STATUSES:
        raise UsageError(f"endpoint {name} is {status}: approve again once it is InService")
    serving = endpoint.get("EndpointConfigName", "")
    if not ours(name, serving):
        raise UsageError(
            f"endpoint {name} serves configuration {serving!r}, which this pipeline did not "
            "create: refusing to replace it; pass --endpoint to deploy to another name"
        )


def new_names(endpoint_name: str, version: int) -> tuple[str, str]:
    """(model name, endpoint configuration name) for deploying `version` now."""
    stamp = int(time.time())
    config = f"{endpoint_name}-v{version}at{stamp}"
    if len(config) > MAX_NAME:
        raise UsageError(
            f"endpoint name {endpoint_name} is too long to name its configurations "
            f"({config} has more than {MAX_NAME} characters)"
        )
    return f"dogbreed-v{version}-{stamp}", config


def package_container(package: dict) -> dict:
    """What a model needs of a version's inference container: image, model data, environment
    ({} for a version without one)."""
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or [{}]
    return {
        key: containers[0][key]
        for key in ("Image", "ModelDataUrl", "Environment")
        if containers[0].get(key)
    }


def deployable_container(package: dict) -> dict:
    container = package_container(package)
    if not container.get("ModelDataUrl"):
        raise UsageError(f"{package['ModelPackageArn']} has no inference container to deploy")
    return container


def create_model(aws: Aws, package: dict, settings: Settings, name: str) -> None:
    request = {
        "ModelName": name,
        "PrimaryContainer": deployable_container(package),
        "ExecutionRoleArn": settings.role_arn,
    }
    if settings.vpc_config:
        request["VpcConfig"] = settings.vpc_config
    if settings.network_isolation:
        request["EnableNetworkIsolation"] = True
    aws.sagemaker.create_model(**request)


def create_endpoint_config(aws: Aws, settings: Settings, model: str, name: str) -> None:
    request = {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": settings.instance_type,
                "InitialVariantWeight": 1,
            }
        ],
    }
    if settings.kms_key_id:
        request["KmsKeyId"] = settings.kms_key_id
    aws.sagemaker.create_endpoint_config(**request)


def switch_endpoint(aws: Aws, endpoint: dict | None, name: str, config: str) -> None:
    if endpoint is None:
        aws.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    else:
        aws.sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=config)


def wait_in_service(aws: Aws, name: str, config: str, previous: str | None, timeout: float) -> None:
    """Poll until the endpoint has stopped changing; DeployFailed unless it serves `config`.

    SageMaker rolls a failed update back: the endpoint returns to InService on the previous
    configuration, which this reports, naming the reason, rather than calling it success.
    """
    deadline = time.monotonic() + timeout
    while True:
        endpoint = describe_endpoint(aws, name) or {}
        status = endpoint.get("EndpointStatus")
        if status not in BUSY_STATUSES:
            break
        if time.monotonic() > deadline:
            raise DeployFailed(
                f"endpoint {name} is still {status} after {timeout:.0f}s: "
                "`dogbreed-pipeline approve` returned; SageMaker goes on with the change"
            )
        time.sleep(POLL_SECONDS)
    serving = endpoint.get("EndpointConfigName")
    if status == "InService" and serving == config:
        return
    reason = endpoint.get("FailureReason") or "no reason given"
    if status == "InService" and previous and serving == previous:
        raise DeployFailed(
            f"the update of endpoint {name} failed ({reason}): it still serves {previous}"
        )
    raise DeployFailed(f"endpoint {name} is {status} on {serving} ({reason})")
