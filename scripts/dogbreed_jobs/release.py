"""Release a model to the endpoint: blue/green with auto-rollback alarms, then autoscaling.

One implementation for both sides: the DeployEndpoint processing job runs it with the
execution role (scripts/release.py), and `dogbreed-pipeline approve` runs it on the host
(pipeline/deployment.py imports this module, as steps import the contract). Against AWS it
calls SageMaker, CloudWatch and Application Auto Scaling; under run-local and `approve
--store` the same calls reach run-local's API (pipeline/local/sagemaker_api.py), whose store
plays the bake and the rollback by the same rules.

Order, so that a refusal changes nothing:
  1. checks: the numbers (1 <= min <= count <= max), the endpoint (not Failed, not changing,
     serving a configuration of the pipeline's naming), the alarms (each exists; none is in
     ALARM on the serving fleet, which would roll the update back at once);
  2. the endpoint configuration (reused when a retry finds it), sized at the larger of the
     asked count and the fleet's current desired count (capped at the maximum), so a fleet
     that autoscaling grew is not replaced by a smaller one that the same load would swamp;
  3. CreateEndpoint (a first deployment: nothing to roll back to), or UpdateEndpoint with a
     blue/green ALL_AT_ONCE policy and the alarms as AutoRollbackConfiguration; then wait;
  4. a rollback fails the release in one line naming the alarm that fired; success
     registers target tracking on invocations per instance (min == max: fixed capacity,
     any earlier scaling removed).
Why ALL_AT_ONCE with a bake: the alarms are fixed resources (infra/) on the endpoint's
EndpointName/VariantName dimensions; with all traffic on the new fleet they measure it alone,
while the old fleet stays up for an instant rollback. Canary or linear shifting would need
alarms per configuration (EndpointConfigName dimension) made at every deployment.

A retry is safe: an endpoint already InService on the configuration is a success, and one
still changing toward it is waited for.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from dogbreed_jobs import contract
from dogbreed_jobs.compare_deployed import describe_endpoint, missing

BUSY_STATUSES = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
SCALING = {
    "ServiceNamespace": "sagemaker",
    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
}
INVOCATIONS_METRIC = "SageMakerVariantInvocationsPerInstance"
# SageMaker's bounds (botocore's model): a bake of at most an hour, a deployment of 10 min
# to 8 h. Provisioning a fleet takes minutes before the bake starts.
MAX_BAKE_SECONDS = 3600
PROVISIONING_SECONDS = 1800
MIN_EXECUTION_SECONDS, MAX_EXECUTION_SECONDS = 600, 28800
# A first deployment has no DeploymentConfig to bound it: SageMaker's own waiter's hour.
CREATE_TIMEOUT_SECONDS = 3600
MAX_POLL_SECONDS = 30


class Refused(Exception):
    """Nothing was changed: the message says why in one line, and what to do."""


class ReleaseFailed(Exception):
    """The endpoint does not serve the new configuration; the message says what it serves."""


@dataclasses.dataclass(frozen=True)
class Release:
    endpoint_name: str
    config_name: str
    model_name: str
    instance_type: str
    alarms: tuple[str, ...]
    instance_count: int = 1
    min_instances: int = 1
    max_instances: int = 1
    invocations_target: float = 375.0
    bake_seconds: int = 600
    kms_key_id: str | None = None
    inference_ami_version: str | None = None
    wait: bool = True
    # None: the deployment's own bound (MaximumExecutionTimeoutInSeconds, or an hour).
    timeout_seconds: float | None = None

    @property
    def scales(self) -> bool:
        return self.min_instances < self.max_instances


@dataclasses.dataclass
class Clients:
    """boto3 clients of the three services a release calls (AWS's, or run-local's API)."""

    sagemaker: object
    cloudwatch: object
    autoscaling: object  # application-autoscaling


@dataclasses.dataclass
class Outcome:
    endpoint: str
    config: str
    action: str  # "created", "updated", "already serving", "started"
    instance_count: int
    scaling: dict | None  # {"min", "max", "target"}, or None: fixed capacity

    def report(self) -> dict:
        return dataclasses.asdict(self)

    def line(self) -> str:
        capacity = (
            f"autoscaling {self.scaling['min']}-{self.scaling['max']} instances at "
            f"{self.scaling['target']:g} invocations per instance per minute"
            if self.scaling
            else f"{self.instance_count} instance(s), fixed"
        )
        return f"endpoint {self.endpoint} {self.action} on {self.config}: {capacity}"


# ------------------------------------------------------------------------------- checks


def check_request(release: Release) -> None:
    """The numbers make sense together; SageMaker's own bounds."""
    low, count, high = release.min_instances, release.instance_count, release.max_instances
    if not 1 <= low <= count <= high:
        raise Refused(
            f"instances: minimum {low}, count {count}, maximum {high}: they must satisfy "
            "1 <= minimum <= count <= maximum"
        )
    if release.scales and not release.invocations_target > 0:
        raise Refused(
            "the invocations-per-instance target must be above 0, not "
            f"{release.invocations_target:g}"
        )
    if not 0 <= release.bake_seconds <= MAX_BAKE_SECONDS:
        raise Refused(
            f"bake of {release.bake_seconds}s: SageMaker allows 0 to {MAX_BAKE_SECONDS} seconds"
        )
    if not 1 <= len(release.alarms) <= 10:
        raise Refused(
            f"{len(release.alarms)} auto-rollback alarms: SageMaker takes 1 to 10 "
            "(infra/ makes the endpoint's two)"
        )
    if not contract.is_pipeline_config(release.endpoint_name, release.config_name):
        raise Refused(
            f"configuration name {release.config_name!r} is not of the pipeline's naming "
            f"({release.endpoint_name}{contract.CONFIG_NAME_SEPARATOR}<tag>)"
        )


def _pending_config(endpoint: dict) -> str | None:
    return (endpoint.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")


def check_endpoint(endpoint: dict | None, name: str) -> None:
    """Refuse an endpoint that cannot take an update now, or that is not the pipeline's."""
    if endpoint is None:
        return
    status = endpoint.get("EndpointStatus")
    if status == "Failed":
        raise Refused(
            f"endpoint {name} is Failed ({endpoint.get('FailureReason') or 'no reason given'}): "
            "SageMaker cannot update it; `dogbreed-pipeline teardown` deletes it, then deploy "
            "again to create it"
        )
    if status in BUSY_STATUSES:
        raise Refused(f"endpoint {name} is {status}: deploy again once it is InService")
    serving = endpoint.get("EndpointConfigName", "")
    if not contract.is_pipeline_config(name, serving):
        raise Refused(
            f"endpoint {name} serves configuration {serving!r}, which this pipeline did not "
            "create: refusing to replace it; deploy to another endpoint name"
        )


def describe_alarms(cloudwatch, names) -> dict[str, dict]:
    """name -> the alarm (metric or composite) for each of `names` that exists."""
    found: dict[str, dict] = {}
    for page in cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmNames=list(names), AlarmTypes=["MetricAlarm", "CompositeAlarm"]
    ):
        for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
            found[alarm["AlarmName"]] = alarm
    return found


def check_alarms(cloudwatch, release: Release, endpoint: dict | None) -> dict[str, dict]:
    """Refuse a missing alarm, or one firing on the serving fleet; the alarms as they are."""
    alarms = describe_alarms(cloudwatch, release.alarms)
    absent = [name for name in release.alarms if name not in alarms]
    if absent:
        raise Refused(
            f"auto-rollback alarm {', '.join(absent)} does not exist: deploy the stack in infra/ "
            f"(it makes them for EndpointName={release.endpoint_name})"
        )
    firing = [name for name in release.alarms if alarms[name].get("StateValue") == "ALARM"]
    if endpoint is not None and firing:
        raise Refused(
            f"alarm {', '.join(firing)} is in ALARM on the serving fleet of endpoint "
            f"{release.endpoint_name}: a blue/green update would roll back at once; deploy "
            "again once it is OK"
        )
    return alarms


# ------------------------------------------------------------------------------ scaling


def _scaling_key(endpoint_name: str) -> dict:
    return {**SCALING, "ResourceId": contract.scaling_resource_id(endpoint_name)}


def read_scaling(autoscaling, endpoint_name: str) -> tuple[dict | None, list[dict]]:
    """(the variant's scalable target or None, its scaling policies)."""
    key = _scaling_key(endpoint_name)
    targets = autoscaling.describe_scalable_targets(
        ServiceNamespace=key["ServiceNamespace"],
        ResourceIds=[key["ResourceId"]],
        ScalableDimension=key["ScalableDimension"],
    ).get("ScalableTargets", [])
    if not targets:
        return None, []
    policies = autoscaling.describe_scaling_policies(**key).get("ScalingPolicies", [])
    return targets[0], policies


def remove_scaling(autoscaling, endpoint_name: str) -> list[str]:
    """Delete the variant's scaling policies and deregister its target; what was removed."""
    from botocore.exceptions import ClientError

    key = _scaling_key(endpoint_name)
    target, policies = read_scaling(autoscaling, endpoint_name)
    removed = []
    for policy in policies:
        try:
            autoscaling.delete_scaling_policy(PolicyName=policy["PolicyName"], **key)
        except ClientError as error:  # a concurrent removal
            if error.response.get("Error", {}).get("Code") != "ObjectNotFoundException":
                raise
        removed.append(f"scaling policy {policy['PolicyName']}")
    if target is not None:
        try:
            autoscaling.deregister_scalable_target(**key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ObjectNotFoundException":
                raise
        removed.append(f"scalable target {key['ResourceId']}")
    return removed


def _restore_scaling(autoscaling, target: dict | None, policies: list[dict]) -> None:
    """Put back what remove_scaling took off a fleet that a rollback kept."""
    if target is None:
        return
    key = {k: target[k] for k in ("ServiceNamespace", "ResourceId", "ScalableDimension")}
    autoscaling.register_scalable_target(
        **key, MinCapacity=target["MinCapacity"], MaxCapacity=target["MaxCapacity"]
    )
    for policy in policies:
        settings = {
            k: policy[k]
            for k in (
                "PolicyType",
                "TargetTrackingScalingPolicyConfiguration",
                "StepScalingPolicyConfiguration",
            )
            if k in policy
        }
        autoscaling.put_scaling_policy(PolicyName=policy["PolicyName"], **key, **settings)


def apply_scaling(autoscaling, release: Release) -> dict | None:
    """Target tracking on invocations per instance, or fixed capacity (min == max)."""
    if not release.scales:
        remove_scaling(autoscaling, release.endpoint_name)
        return None
    key = _scaling_key(release.endpoint_name)
    autoscaling.register_scalable_target(
        **key, MinCapacity=release.min_instances, MaxCapacity=release.max_instances
    )
    autoscaling.put_scaling_policy(
        PolicyName=contract.scaling_policy_name(release.endpoint_name),
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(release.invocations_target),
            "PredefinedMetricSpecification": {"PredefinedMetricType": INVOCATIONS_METRIC},
        },
        **key,
    )
    return {
        "min": release.min_instances,
        "max": release.max_instances,
        "target": float(release.invocations_target),
    }


# ------------------------------------------------------------------------------ release


def deployment_config(release: Release) -> dict:
    """UpdateEndpoint's DeploymentConfig: all at once, baked, rolled back on the alarms.

    The bake is both the wait after the shift and the old fleet's wait before termination,
    so the alarms watch the new fleet for the whole bake while the old one can take the
    traffic back at once.
    """
    bake = release.bake_seconds
    timeout = min(
        MAX_EXECUTION_SECONDS, max(MIN_EXECUTION_SECONDS, 2 * bake + PROVISIONING_SECONDS)
    )
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": bake},
            "TerminationWaitInSeconds": bake,
            "MaximumExecutionTimeoutInSeconds": timeout,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in release.alarms]},
    }


def _variant(endpoint: dict | None) -> dict:
    for variant in (endpoint or {}).get("ProductionVariants") or []:
        if variant.get("VariantName") == contract.VARIANT_NAME:
            return variant
    return {}


def instance_count(release: Release, endpoint: dict | None) -> int:
    current = _variant(endpoint).get("DesiredInstanceCount") or 0
    return min(max(release.instance_count, current), release.max_instances)


def _served_instance_type(sagemaker, endpoint: dict) -> str | None:
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    for variant in config.get("ProductionVariants") or []:
        if variant.get("VariantName") == contract.VARIANT_NAME:
            return variant.get("InstanceType")
    return None


def ensure_config(sagemaker, release: Release, count: int) -> None:
    """Create the endpoint configuration, unless a retry finds it made."""
    from botocore.exceptions import ClientError

    try:
        sagemaker.describe_endpoint_config(EndpointConfigName=release.config_name)
        return
    except ClientError as error:
        if not missing(error):
            raise
    variant = {
        "VariantName": contract.VARIANT_NAME,
        "ModelName": release.model_name,
        "InitialInstanceCount": count,
        "InstanceType": release.instance_type,
        "InitialVariantWeight": 1.0,
    }
    if release.inference_ami_version:
        variant["InferenceAmiVersion"] = release.inference_ami_version
    request = {"EndpointConfigName": release.config_name, "ProductionVariants": [variant]}
    if release.kms_key_id:
        # Encrypts the ML storage volume of the endpoint's instances.
        request["KmsKeyId"] = release.kms_key_id
    sagemaker.create_endpoint_config(**request)


def wait(sagemaker, name: str, timeout: float) -> dict:
    """Poll until the endpoint has stopped changing (1 s, doubling to 30 s between polls)."""
    deadline, pause = time.monotonic() + timeout, 1.0
    while True:
        endpoint = describe_endpoint(sagemaker, name) or {}
        status = endpoint.get("EndpointStatus")
        if status not in BUSY_STATUSES:
            return endpoint
        if time.monotonic() > deadline:
            raise ReleaseFailed(
                f"endpoint {name} is still {status} after {timeout:.0f}s: stopped waiting; "
                "SageMaker goes on with the change"
            )
        time.sleep(pause)
        pause = min(MAX_POLL_SECONDS, pause * 2)


def fired_alarms(cloudwatch, names, before: dict[str, dict]) -> list[str]:
    """The alarms in ALARM; if none is, those whose state changed since `before` (what the
    checks read before the update: one that fired during the bake and has recovered since),
    each with its state now. Comparing CloudWatch's own stamps needs no clock of ours."""
    found = describe_alarms(cloudwatch, names)
    firing = [name for name, alarm in found.items() if alarm.get("StateValue") == "ALARM"]
    if not firing:
        firing = [
            name
            for name, alarm in found.items()
            if name in before
            and alarm.get("StateUpdatedTimestamp") != before[name].get("StateUpdatedTimestamp")
        ]
    return [f"{name} ({found[name].get('StateValue')})" for name in sorted(firing)]


def outcome_of(clients: Clients, release: Release, endpoint: dict, previous, before) -> None:
    """Raise ReleaseFailed unless `endpoint` (waited for) serves the new configuration."""
    name, serving = release.endpoint_name, endpoint.get("EndpointConfigName")
    status = endpoint.get("EndpointStatus")
    if status == "InService" and serving == release.config_name:
        return
    reason = endpoint.get("FailureReason") or "no reason given"
    if status == "InService" and previous and serving == previous:
        fired = fired_alarms(clients.cloudwatch, release.alarms, before)
        cause = f"alarm {', '.join(fired)} fired" if fired else "no alarm fired"
        raise ReleaseFailed(
            f"endpoint {name} rolled back to {previous}: {cause} during the update to "
            f"{release.config_name} ({reason})"
        )
    raise ReleaseFailed(f"endpoint {name} is {status or 'gone'} on {serving} ({reason})")


def release(clients: Clients, release: Release) -> Outcome:
    """Check, configure, deploy, wait, scale (module docstring); the outcome."""
    check_request(release)
    sagemaker, name = clients.sagemaker, release.endpoint_name
    endpoint = describe_endpoint(sagemaker, name)
    count = instance_count(release, endpoint)
    previous = endpoint.get("EndpointConfigName") if endpoint else None
    before: dict[str, dict] = {}  # the alarms as the checks read them
    taken: tuple[dict | None, list[dict]] = (None, [])
    if endpoint and previous == release.config_name and endpoint["EndpointStatus"] == "InService":
        action = "already serving"  # a retry after the release succeeded
    elif endpoint and _pending_config(endpoint) == release.config_name:
        action = "updated"  # a retry while the update it started goes on
    else:
        check_endpoint(endpoint, name)
        before = check_alarms(clients.cloudwatch, release, endpoint)
        ensure_config(sagemaker, release, count)
        action, taken = _deploy(clients, release, endpoint)
    if not release.wait:
        return Outcome(name, release.config_name, "started", count, None)
    if action != "already serving":
        timeout = release.timeout_seconds or (
            deployment_config(release)["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"]
            if endpoint
            else CREATE_TIMEOUT_SECONDS
        )
        try:
            outcome_of(clients, release, wait(sagemaker, name, timeout), previous, before)
        except ReleaseFailed:
            _restore_scaling(clients.autoscaling, *taken)
            raise
    scaling = apply_scaling(clients.autoscaling, release)
    return Outcome(name, release.config_name, action, count, scaling)


def _deploy(
    clients: Clients, release: Release, endpoint: dict | None
) -> tuple[str, tuple[dict | None, list[dict]]]:
    """Create or update the endpoint; (what was done, the scaling taken off the old fleet)."""
    sagemaker, name = clients.sagemaker, release.endpoint_name
    if endpoint is None:
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=release.config_name)
        return "created", (None, [])
    taken: tuple[dict | None, list[dict]] = (None, [])
    # AWS ("Update endpoints that use auto scaling"): changing the instance type of an
    # autoscaled variant fails unless its scaling is removed first; a model change alone is
    # allowed with it in place.
    if _served_instance_type(sagemaker, endpoint) != release.instance_type:
        taken = read_scaling(clients.autoscaling, name)
        remove_scaling(clients.autoscaling, name)
    sagemaker.update_endpoint(
        EndpointName=name,
        EndpointConfigName=release.config_name,
        DeploymentConfig=deployment_config(release),
    )
    return "updated", taken


# ---------------------------------------------------------------------------- the job


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--endpoint-name", required=True)
    parser.add_argument("--config-name", required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--instance-type", required=True)
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument("--min-instances", type=int, default=1)
    parser.add_argument("--max-instances", type=int, default=1)
    parser.add_argument("--invocations-target", type=float, default=Release.invocations_target)
    parser.add_argument("--bake-seconds", type=int, default=Release.bake_seconds)
    parser.add_argument("--alarm", action="append", required=True, dest="alarms")
    parser.add_argument("--kms-key-id")
    parser.add_argument("--inference-ami-version")
    parser.add_argument("--region", required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    return parser


def clients_for(region: str) -> Clients:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard"})
    return Clients(
        *(
            boto3.client(service, region_name=region, config=config)
            for service in ("sagemaker", "cloudwatch", "application-autoscaling")
        )
    )


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    asked = Release(
        endpoint_name=args.endpoint_name,
        config_name=args.config_name,
        model_name=args.model_name,
        instance_type=args.instance_type,
        alarms=tuple(args.alarms),
        instance_count=args.instance_count,
        min_instances=args.min_instances,
        max_instances=args.max_instances,
        invocations_target=args.invocations_target,
        bake_seconds=args.bake_seconds,
        kms_key_id=args.kms_key_id or None,
        inference_ami_version=args.inference_ami_version or None,
    )
    try:
        outcome = release(clients_for(args.region), asked)
    except (Refused, ReleaseFailed) as error:
        print(str(error), file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as error:
        # The message names the call the role could not make.
        print(f"cannot release to endpoint {args.endpoint_name}: {error}", file=sys.stderr)
        return 1
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / contract.RELEASE_FILE
    path.write_text(json.dumps(outcome.report(), indent=2, sort_keys=True) + "\n", "utf-8")
    print(outcome.line())
    return 0
