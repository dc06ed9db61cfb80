"""Register, approve, deploy, describe and tear down, once, as calls of a SageMaker client.

Every function here takes a boto3 SageMaker client: boto3's own for AWS, or one pointed at
run-local's SageMaker API (pipeline.local.sagemaker_api), which answers the same calls from
the store. So `approve`, `teardown` and run-local's deploy steps run the same code against
both, and botocore checks every request against SageMaker's service model locally too.

A version is deployed the way the pipeline's own deploy steps deploy: the settings (role,
VPC, network isolation, instance type and count, autoscaling, bake, KMS key, endpoint name,
model package group) come from the definition the pipeline was upserted with, and the
release itself is the DeployEndpoint job's code (dogbreed_jobs.release: blue/green with
auto-rollback alarms, then autoscaling), so an approval later in Studio or from the CLI
serves the model exactly as an Approved execution would have. Configurations are named by
the contract's rule, which `teardown` knows as the pipeline's own.

Everything that can refuse is checked before anything changes: the version exists and is
in the pipeline's group, the endpoint is neither Failed nor in the middle of a change, and
its alarms exist and are not firing.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time

from dogbreed_jobs import compare_deployed, contract
from dogbreed_jobs import release as releases
from dogbreed_jobs.compare_deployed import describe_endpoint
from pipeline.aws import Aws, describe_pipeline, is_missing
from pipeline.config import (
    DEFAULT_ENDPOINT_INSTANCE_TYPE,
    alarm_names,
    approval_config_name,
    is_pipeline_config,
)
from pipeline.definition_json import iter_steps
from pipeline.errors import CliError, UsageError
from pipeline.parameter_specs import default

log = logging.getLogger(__name__)

PACKAGE_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/"
    r"(?P<group>[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62})/(?P<version>\d+)$"
)


class DeployFailed(CliError):
    """The endpoint did not end up serving the new configuration; the message says what did."""

    exit_code = 1


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the pipeline's deploy steps deploy, read from its definition."""

    group: str
    endpoint_name: str
    # None: the endpoint keeps the type it runs on (a new one gets the parameter's default).
    instance_type: str | None
    role_arn: str | None
    vpc_config: dict | None = None
    network_isolation: bool = False
    kms_key_id: str | None = None
    # The production variant's host AMI (GPU endpoints on the Ray CUDA image), None: default.
    inference_ami_version: str | None = None
    # Capacity and guardrails: the pipeline parameters' defaults (pipeline/parameter_specs.py).
    instance_count: int = default("EndpointInstanceCount")
    min_instances: int = default("EndpointMinInstances")
    max_instances: int = default("EndpointMaxInstances")
    invocations_target: float = default("InvocationsPerInstanceTarget")
    bake_seconds: int = default("EndpointBakeSeconds")


def _resolved(value, defaults: dict):
    """A literal, or a parameter's default (also as text: a Join of it alone, as numbers are
    passed in ContainerArguments); None for anything only an execution knows."""
    if isinstance(value, dict):
        joined = (value.get("Std:Join") or {}).get("Values")
        if isinstance(joined, list) and len(joined) == 1:
            return _resolved(joined[0], defaults)
        reference = value.get("Get")
        if isinstance(reference, str) and reference.startswith("Parameters."):
            return defaults.get(reference.removeprefix("Parameters."))
        return None
    return value


def release_arguments(arguments: dict) -> dict:
    """The DeployEndpoint job's `--flag value` container arguments, as {flag: value}."""
    values = list((arguments.get("AppSpecification") or {}).get("ContainerArguments") or [])
    return {
        flag.removeprefix("--"): value
        for flag, value in zip(values[::2], values[1::2], strict=True)
        if flag != "--alarm"
    }


def _is_release(entry) -> bool:
    entrypoint = (entry.arguments.get("AppSpecification") or {}).get("ContainerEntrypoint") or []
    return (
        entry.type == "Processing"
        and bool(entrypoint)
        and (entrypoint[-1].endswith("/" + contract.RELEASE_SCRIPT))
    )


def settings_of(description: dict) -> Settings:
    """The deploy settings of a described pipeline (pipeline.aws.describe_pipeline)."""
    definition = description.get("Definition") or {}
    defaults = {p.get("Name"): p.get("DefaultValue") for p in definition.get("Parameters") or []}
    steps: dict[str, dict] = {}
    for entry in iter_steps(definition):
        kind = "Release" if _is_release(entry) else entry.type
        steps.setdefault(kind, entry.arguments)
    kinds = ("RegisterModel", "Model", "Release")
    missing = [kind for kind in kinds if kind not in steps]
    if missing:
        raise UsageError(
            f"pipeline {description.get('PipelineName')} has no "
            f"{', '.join(missing).replace('Release', 'DeployEndpoint release')} step: it is not "
            "this version's dogbreed-pipeline definition; upsert this project's definition first"
        )
    model = steps["Model"]
    released = {k: _resolved(v, defaults) for k, v in release_arguments(steps["Release"]).items()}

    def number(flag: str, kind):
        value = released.get(flag)
        return kind(value) if value is not None else dataclasses.MISSING

    numbers = {
        "instance_count": number("instance-count", int),
        "min_instances": number("min-instances", int),
        "max_instances": number("max-instances", int),
        "invocations_target": number("invocations-target", float),
        "bake_seconds": number("bake-seconds", int),
    }
    return Settings(
        group=_resolved(steps["RegisterModel"].get("ModelPackageGroupName"), defaults),
        endpoint_name=released.get("endpoint-name"),
        instance_type=released.get("instance-type"),
        role_arn=_resolved(model.get("ExecutionRoleArn"), defaults) or description["RoleArn"],
        vpc_config=model.get("VpcConfig"),
        network_isolation=bool(model.get("EnableNetworkIsolation")),
        kms_key_id=released.get("kms-key-id"),
        inference_ami_version=released.get("inference-ami-version"),
        **{k: v for k, v in numbers.items() if v is not dataclasses.MISSING},
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


def package_arn(sagemaker, group: str, version: str) -> str:
    """The ARN of `version` (a number, or an ARN that must be of `group`).

    A version's ARN is its group's with `model-package/<group>/<number>`: asking for the
    group's ARN needs neither the account nor the partition, and says if the group is absent.
    """
    number = version_number(version, group)
    if PACKAGE_ARN_RE.match(version):
        return version
    from botocore.exceptions import ClientError

    try:
        group_arn = sagemaker.describe_model_package_group(ModelPackageGroupName=group)[
            "ModelPackageGroupArn"
        ]
    except ClientError as exc:
        if is_missing(exc):
            raise UsageError(f"there is no model package group {group}") from None
        raise
    prefix, _, _ = group_arn.rpartition(":model-package-group/")
    return f"{prefix}:model-package/{group}/{number}"


def describe_version(sagemaker, arn: str) -> dict:
    from botocore.exceptions import ClientError

    try:
        return sagemaker.describe_model_package(ModelPackageName=arn)
    except ClientError as exc:
        if not is_missing(exc):
            raise
    group, version = arn.rsplit("/", 2)[-2:]
    listed = sagemaker.list_model_packages(
        ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending", MaxResults=100
    ).get("ModelPackageSummaryList", [])
    there = sorted(p["ModelPackageVersion"] for p in listed if p.get("ModelPackageVersion"))
    raise UsageError(
        f"model package group {group} has no version {version} "
        f"(versions: {', '.join(map(str, there)) or 'none'})"
    )


def set_approval(sagemaker, arn: str, status: str, description: str | None) -> None:
    request = {"ModelPackageArn": arn, "ModelApprovalStatus": status}
    if description:
        request["ApprovalDescription"] = description
    sagemaker.update_model_package(**request)


def register_version(sagemaker, request: dict) -> dict:
    """CreateModelPackage (a RegisterModel step's arguments); the version as described."""
    arn = sagemaker.create_model_package(**request)["ModelPackageArn"]
    return sagemaker.describe_model_package(ModelPackageName=arn)


def served_variant(sagemaker, endpoint: dict) -> tuple[dict, dict]:
    """(production variant, model) of what the endpoint's configuration serves."""
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = (config.get("ProductionVariants") or [{}])[0]
    return variant, sagemaker.describe_model(ModelName=variant["ModelName"])


def model_data(model: dict) -> str | None:
    """A described model's ModelDataUrl."""
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    return container.get("ModelDataUrl")


def new_names(endpoint_name: str, version: int) -> tuple[str, str]:
    """(model name, endpoint configuration name) for deploying `version` now."""
    stamp = int(time.time())
    try:
        config = approval_config_name(endpoint_name, version, stamp)
    except ValueError as err:
        raise UsageError(str(err)) from None
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


def create_model(sagemaker, name: str, request: dict) -> str:
    """CreateModel (a Model step's arguments, or a version's); the model's ARN."""
    return sagemaker.create_model(**{**request, "ModelName": name})["ModelArn"]


def model_request(package: dict, settings: Settings) -> dict:
    """CreateModel's request for a version, as the pipeline's Model step would make it."""
    request = {"PrimaryContainer": deployable_container(package)}
    if settings.role_arn:
        request["ExecutionRoleArn"] = settings.role_arn
    if settings.vpc_config:
        request["VpcConfig"] = settings.vpc_config
    if settings.network_isolation:
        request["EnableNetworkIsolation"] = True
    return request


# How far back the registry is searched for the version an endpoint serves: a group's
# versions are listed newest first, and each is described until one has the model's data.
SEARCHED_VERSIONS = 100


@dataclasses.dataclass(frozen=True)
class Serving:
    """What an endpoint serves: its state, and the registered version its model data is."""

    endpoint: str
    status: str
    config: str
    model_data: str | None
    version: int | None = None
    approval: str | None = None


def _versions(sagemaker, group: str, **filters) -> list[dict]:
    """The group's newest versions' summaries (at most SEARCHED_VERSIONS), newest first."""
    return compare_deployed.newest_versions(sagemaker, group, SEARCHED_VERSIONS, **filters)


def serving(sagemaker, group: str, endpoint_name: str) -> Serving | None:
    """What `endpoint_name` serves, with its version of `group`; None without the endpoint."""
    endpoint = describe_endpoint(sagemaker, endpoint_name)
    if endpoint is None:
        return None
    _, model = served_variant(sagemaker, endpoint)
    found = Serving(
        endpoint=endpoint_name,
        status=endpoint.get("EndpointStatus", "?"),
        config=endpoint.get("EndpointConfigName", "?"),
        model_data=model_data(model),
    )
    for summary in _versions(sagemaker, group):
        package = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        if package_container(package).get("ModelDataUrl") == found.model_data:
            return dataclasses.replace(
                found,
                version=package.get("ModelPackageVersion"),
                approval=package.get("ModelApprovalStatus"),
            )
    return found


def describe_serving(found: Serving | None, group: str, endpoint_name: str) -> str:
    """One line for `status`: which version the endpoint serves."""
    if found is None:
        return f"endpoint {endpoint_name} does not exist"
    if found.version is None:
        what = f"{found.model_data} (not a version of {group} among its newest)"
    else:
        what = f"{group} version {found.version} ({found.approval})"
    return f"endpoint {found.endpoint} ({found.status}) serves {what}, configuration {found.config}"


def rollback_version(sagemaker, group: str, version: int, data: str | None) -> int | None:
    """The version to roll back to from `version`: the newest Approved one before it with
    another model (a version approved twice is the same model); None without one."""
    for summary in _versions(sagemaker, group, ModelApprovalStatus="Approved"):
        number = summary.get("ModelPackageVersion")
        if number is None or number >= version:
            continue
        package = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        if package_container(package).get("ModelDataUrl") != data:
            return number
    return None


def _warn_rejected_serving(sagemaker, settings: Settings, version: int, data: str | None) -> None:
    """A rejected version that still serves: say so, and how to roll back."""
    name = settings.endpoint_name
    endpoint = describe_endpoint(sagemaker, name)
    if not endpoint or model_data(served_variant(sagemaker, endpoint)[1]) != data:
        return
    previous = rollback_version(sagemaker, settings.group, version, data)
    if previous is None:
        log.warning(
            "version %d is what endpoint %s serves, and rejecting it does not take it off: "
            "there is no earlier Approved version to roll back to; `dogbreed-pipeline "
            "teardown` deletes the endpoint",
            version,
            name,
        )
        return
    log.warning(
        "version %d is what endpoint %s serves, and rejecting it does not take it off: "
        "roll back to version %d, the newest Approved one before it, with `dogbreed-pipeline "
        "approve --model-version %d`",
        version,
        name,
        previous,
        previous,
    )


@dataclasses.dataclass(frozen=True)
class Approval:
    """What `approve` was asked to do with one version."""

    version: str
    reject: bool = False
    reason: str | None = None
    deploy: bool = True
    wait: bool = True
    timeout: float = 3600.0


def release_of(
    settings: Settings, model: str, config: str, instance_type: str, ask
) -> releases.Release:
    """The release `approve` runs: the pipeline's settings, the endpoint's alarms by the rule."""
    return releases.Release(
        endpoint_name=settings.endpoint_name,
        config_name=config,
        model_name=model,
        instance_type=instance_type,
        alarms=tuple(alarm_names(settings.endpoint_name)),
        instance_count=settings.instance_count,
        min_instances=settings.min_instances,
        max_instances=settings.max_instances,
        invocations_target=settings.invocations_target,
        bake_seconds=settings.bake_seconds,
        kms_key_id=settings.kms_key_id,
        inference_ami_version=settings.inference_ami_version,
        wait=ask.wait,
        timeout_seconds=ask.timeout,
    )


def approve(clients: releases.Clients, settings: Settings, ask: Approval) -> tuple[str, bool]:
    """Approve and deploy, or reject, a version; (its ARN, whether the endpoint changed)."""
    sagemaker = clients.sagemaker
    arn = package_arn(sagemaker, settings.group, ask.version)
    package = describe_version(sagemaker, arn)
    version = package.get("ModelPackageVersion") or int(arn.rsplit("/", 1)[-1])
    data = package_container(package).get("ModelDataUrl")
    name = settings.endpoint_name
    if ask.reject:
        set_approval(sagemaker, arn, "Rejected", ask.reason)
        log.info("rejected %s version %d", settings.group, version)
        _warn_rejected_serving(sagemaker, settings, version, data)
        return arn, False
    endpoint, variant, served = None, {}, {}
    if ask.deploy:
        endpoint = describe_endpoint(sagemaker, name)
        try:
            releases.check_endpoint(endpoint, name)
        except releases.Refused as refused:
            raise UsageError(str(refused)) from None
        if endpoint:
            variant, served = served_variant(sagemaker, endpoint)
    fresh = ask.deploy and not (endpoint and model_data(served) == data)
    if fresh:
        instance_type = (
            settings.instance_type or variant.get("InstanceType") or DEFAULT_ENDPOINT_INSTANCE_TYPE
        )
        model, config = new_names(name, version)
        planned = release_of(settings, model, config, instance_type, ask)
        # Every refusal of the release, before the version's status changes.
        try:
            releases.check_request(planned)
            releases.check_alarms(clients.cloudwatch, planned, endpoint)
        except releases.Refused as refused:
            raise UsageError(str(refused)) from None
    set_approval(sagemaker, arn, "Approved", ask.reason)
    was = package["ModelApprovalStatus"]
    log.info("approved %s version %d (was %s)", settings.group, version, was)
    if not ask.deploy:
        return arn, False
    if not fresh:
        log.info("endpoint %s already serves %s: nothing to deploy", name, data)
        return arn, False
    create_model(sagemaker, model, model_request(package, settings))
    log.info(
        "%s endpoint %s with %s (model %s, %s)%s",
        "updating" if endpoint else "creating",
        name,
        config,
        model,
        instance_type,
        f": blue/green, {planned.bake_seconds}s bake watched by {', '.join(planned.alarms)}"
        if endpoint
        else "",
    )
    try:
        outcome = releases.release(clients, planned)
    except releases.Refused as refused:
        raise UsageError(str(refused)) from None
    except releases.ReleaseFailed as failed:
        raise DeployFailed(str(failed)) from None
    if ask.wait:
        log.info("%s; version %d serves", outcome.line(), version)
    else:
        log.info(
            "endpoint %s is changing to %s; autoscaling is set once it is InService: "
            "this command did not wait, so it is not",
            name,
            config,
        )
    return arn, True


# --------------------------------------------------------------------------- teardown


@dataclasses.dataclass
class EndpointResources:
    """What the pipeline's deploy steps made for one endpoint name, and still costs or clutters."""

    endpoint: str | None  # the endpoint's name while it exists
    configs: list[str]  # the endpoint configurations, one per deploying execution
    models: list[str]  # the models those configurations serve
    # The variant's scaling policies and scalable target ("scaling policy <name>", ...).
    # The auto-rollback alarms stay: they belong to infra/'s stack.
    scaling: list[str] = dataclasses.field(default_factory=list)
    scaled_endpoint: str | None = None  # whose variant `scaling` is on

    @property
    def empty(self) -> bool:
        return self.endpoint is None and not self.configs and not self.models and not self.scaling


def endpoint_resources(clients: releases.Clients, endpoint_name: str) -> EndpointResources:
    """The endpoint, its autoscaling, the configurations the pipeline made for it and their
    models.

    Refuses (UsageError) an endpoint that serves a configuration of another naming: it was
    not deployed by this pipeline, and deleting it could take down someone else's service.
    """
    sagemaker = clients.sagemaker
    described = describe_endpoint(sagemaker, endpoint_name)
    endpoint = None
    if described is not None:
        endpoint = endpoint_name
        serving = described.get("EndpointConfigName", "")
        if not is_pipeline_config(endpoint_name, serving):
            raise UsageError(
                f"endpoint {endpoint_name} serves configuration {serving!r}, which this pipeline "
                f"did not create (its configurations are named {endpoint_name}-<execution id>): "
                "refusing to delete it; delete it with the AWS console or CLI if it is yours"
            )
    configs = []
    for page in sagemaker.get_paginator("list_endpoint_configs").paginate(
        NameContains=f"{endpoint_name}-"
    ):
        configs += [
            item["EndpointConfigName"]
            for item in page.get("EndpointConfigs", [])
            if is_pipeline_config(endpoint_name, item["EndpointConfigName"])
        ]
    models = set()
    for config in configs:
        variants = sagemaker.describe_endpoint_config(EndpointConfigName=config)
        models |= {v["ModelName"] for v in variants.get("ProductionVariants", [])}
    target, policies = releases.read_scaling(clients.autoscaling, endpoint_name)
    scaling = [f"scaling policy {policy['PolicyName']}" for policy in policies]
    if target is not None:
        scaling.append(f"scalable target {target['ResourceId']}")
    return EndpointResources(endpoint, sorted(configs), sorted(models), scaling, endpoint_name)


def delete_endpoint_resources(clients: releases.Clients, resources: EndpointResources) -> None:
    """Remove the autoscaling (a target left behind would outlive the endpoint), then delete
    the endpoint (it stops billing), its configurations and models.

    One already gone (a second teardown, a concurrent one) is not an error.
    """
    from botocore.exceptions import ClientError

    sagemaker = clients.sagemaker
    if resources.scaling:
        for removed in releases.remove_scaling(clients.autoscaling, resources.scaled_endpoint):
            log.info("removed %s", removed)

    deletions = [("endpoint", sagemaker.delete_endpoint, "EndpointName", resources.endpoint)]
    deletions = [d for d in deletions if d[3]]
    deletions += [
        ("endpoint configuration", sagemaker.delete_endpoint_config, "EndpointConfigName", name)
        for name in resources.configs
    ]
    deletions += [("model", sagemaker.delete_model, "ModelName", name) for name in resources.models]
    for what, delete, key, name in deletions:
        try:
            delete(**{key: name})
        except ClientError as exc:
            if not is_missing(exc):
                raise
        log.info("deleted %s %s", what, name)
