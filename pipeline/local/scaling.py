"""The storage of run-local's Application Auto Scaling: `<store>/scaling/<endpoint>.<variant>.json`.

One file per endpoint variant holds its scalable target and its policies, as the release
(dogbreed_jobs.release) registers them and `teardown` removes them. Nothing scales a local
endpoint: the records say what SageMaker would be told, and botocore checks every call.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.local import endpoints
from pipeline.local.records import ACCOUNT, now, write_json
from pipeline.local.store import Store

SCALING = "scaling"
# Application Auto Scaling's ResourceId of a SageMaker variant.
_RESOURCE_RE = re.compile(r"^endpoint/(?P<endpoint>[^/]+)/variant/(?P<variant>[A-Za-z0-9-]+)$")
_NAMESPACE, _DIMENSION = "sagemaker", "sagemaker:variant:DesiredInstanceCount"


class ScalingError(ValueError):
    """A request run-local refuses, as Application Auto Scaling would (ValidationException)."""


class NoScaling(ScalingError):
    """No such scalable target or policy (ObjectNotFoundException)."""


def _path(store: Store, request: dict) -> tuple[Path, str]:
    resource = request.get("ResourceId")
    match = _RESOURCE_RE.match(str(resource))
    if request.get("ServiceNamespace") != _NAMESPACE or not match:
        raise ScalingError(
            f"run-local scales SageMaker variants only (ServiceNamespace sagemaker, ResourceId "
            f"endpoint/<name>/variant/<variant>), not {request.get('ServiceNamespace')} {resource}"
        )
    if request.get("ScalableDimension", _DIMENSION) != _DIMENSION:
        raise ScalingError(f"ScalableDimension must be {_DIMENSION}")
    # The endpoint name's own rule keeps the file in its folder.
    endpoints.check_name(endpoints.ENDPOINTS, match["endpoint"])
    return store.root / SCALING / f"{match['endpoint']}.{match['variant']}.json", resource


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _arn(resource: str, policy: str | None = None) -> str:
    tail = f":policyName/{policy}" if policy else ""
    return f"arn:aws:autoscaling:local:{ACCOUNT}:scalableTarget/{resource}{tail}"


def register(store: Store, request: dict) -> dict:
    """RegisterScalableTarget: create, or update the capacities of, the variant's target."""
    path, resource = _path(store, request)
    endpoint = resource.split("/")[1]
    endpoints.load(store, endpoints.ENDPOINTS, endpoint)  # SageMaker's variant must exist
    record = _read(path) or {"Target": None, "Policies": {}}
    target = record["Target"] or {
        "ServiceNamespace": _NAMESPACE,
        "ResourceId": resource,
        "ScalableDimension": _DIMENSION,
        "ScalableTargetARN": _arn(resource),
        "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/"
        "sagemaker.application-autoscaling.amazonaws.com/"
        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
        "CreationTime": now(),
    }
    for key in ("MinCapacity", "MaxCapacity"):
        if key in request:
            target[key] = request[key]
    if "MinCapacity" not in target or "MaxCapacity" not in target:
        raise ScalingError("a new scalable target needs MinCapacity and MaxCapacity")
    if target["MinCapacity"] > target["MaxCapacity"]:
        raise ScalingError("MinCapacity is above MaxCapacity")
    record["Target"] = target
    write_json(path, record)
    return target


def targets(store: Store, request: dict) -> list[dict]:
    """DescribeScalableTargets for the ResourceIds given (run-local asks by id only)."""
    found = []
    for resource in request.get("ResourceIds") or []:
        path, _ = _path(store, {**request, "ResourceId": resource})
        record = _read(path)
        if record and record["Target"]:
            found.append(record["Target"])
    return found


def deregister(store: Store, request: dict) -> None:
    """DeregisterScalableTarget; its policies go with it, as in Application Auto Scaling."""
    path, resource = _path(store, request)
    if not (_read(path) or {}).get("Target"):
        raise NoScaling(f"No scalable target registered for {resource}")
    path.unlink()


def put_policy(store: Store, request: dict) -> dict:
    path, resource = _path(store, request)
    record = _read(path)
    if not record or not record["Target"]:
        raise NoScaling(f"No scalable target registered for {resource}")
    name = request["PolicyName"]
    policy = {
        key: request[key]
        for key in (
            "PolicyName",
            "ServiceNamespace",
            "ResourceId",
            "ScalableDimension",
            "PolicyType",
            "TargetTrackingScalingPolicyConfiguration",
            "StepScalingPolicyConfiguration",
        )
        if key in request
    }
    policy.update(PolicyARN=_arn(resource, name), Alarms=[], CreationTime=now())
    record["Policies"][name] = policy
    write_json(path, record)
    return policy


def policies(store: Store, request: dict) -> list[dict]:
    path, _ = _path(store, request)
    record = _read(path) or {"Policies": {}}
    names = request.get("PolicyNames")
    return [p for n, p in sorted(record["Policies"].items()) if not names or n in names]


def delete_policy(store: Store, request: dict) -> None:
    path, resource = _path(store, request)
    record = _read(path) or {"Policies": {}}
    if record["Policies"].pop(request.get("PolicyName"), None) is None:
        raise NoScaling(f"No scaling policy {request.get('PolicyName')} for {resource}")
    write_json(path, record)
