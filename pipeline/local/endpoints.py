"""The storage of run-local's models, endpoint configurations and endpoints.

`<store>/models/<name>.json` and `<store>/endpoint-configs/<name>.json` hold what
CreateModel and CreateEndpointConfig were given; `<store>/endpoints/<name>.json` is the
deployed endpoint that `serve-local` reads (docs/local-runner.md): the model's S3 URI and
its local path, the container environment, and the registered model package it came from.
Deploying an existing EndpointName updates its record in place, keeping its CreationTime,
as UpdateEndpoint does. Only the local SageMaker API (sagemaker_api.py) writes here; what
to create, update or delete is decided once, in pipeline.deployment.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from pipeline.config import ENDPOINT_NAME_RE
from pipeline.local import alarms, properties, registry
from pipeline.local.records import arn, now, write_json
from pipeline.local.store import Store, StoreError

MODELS = "models"
ENDPOINT_CONFIGS = "endpoint-configs"
ENDPOINTS = "endpoints"
# Model and configuration names become file names: nothing that could leave their folder.
_RESOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")
_NAME_RULES = {MODELS: _RESOURCE_NAME_RE, ENDPOINT_CONFIGS: _RESOURCE_NAME_RE}
_NAME_RULES[ENDPOINTS] = ENDPOINT_NAME_RE


# Nothing measures a local endpoint: its bake is a window for SetAlarmState, cut to this.
MAX_LOCAL_BAKE_SECONDS = 10


class EndpointError(ValueError):
    """A model, configuration or endpoint that cannot be created; the message says why."""


class NotFound(EndpointError):
    """No model, configuration or endpoint of that name; the message names it."""


def what(kind: str) -> str:
    """A kind's name in messages: "model", "endpoint config", "endpoint"."""
    return kind[:-1].replace("-", " ")


def check_name(kind: str, name) -> str:
    """`name` if it is a usable name of a `kind` (NotFound otherwise)."""
    if not isinstance(name, str) or not _NAME_RULES[kind].match(name):
        raise NotFound(f"{what(kind)} {name!r} (not a usable name)")
    return name


def _path(store: Store, kind: str, name) -> Path:
    return store.root / kind / f"{check_name(kind, name)}.json"


def load(store: Store, kind: str, name) -> dict:
    path = _path(store, kind, name)
    if not path.is_file():
        raise NotFound(f"{what(kind)} {name!r}")
    return json.loads(path.read_text(encoding="utf-8"))


def names(store: Store, kind: str) -> list[str]:
    folder = store.root / kind
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def delete(store: Store, kind: str, name) -> None:
    path = _path(store, kind, name)
    if not path.is_file():
        raise NotFound(f"{what(kind)} {name!r}")
    path.unlink()


def _create(store: Store, kind: str, name, record: dict) -> dict:
    path = _path(store, kind, name)
    try:
        write_json(path, record, exclusive=True)
    except FileExistsError:
        # SageMaker's names are unique per account and region: a second one is refused.
        raise EndpointError(f"Cannot create already existing {what(kind)} {name!r}.") from None
    return record


def create_model(store: Store, name: str, request: dict) -> dict:
    record = properties.model(request, name=name, arn=arn("model", name), created=now())
    return _create(store, MODELS, name, record)


def create_endpoint_config(store: Store, name: str, request: dict) -> dict:
    record = properties.endpoint_config(
        request, name=name, arn=arn("endpoint-config", name), created=now()
    )
    return _create(store, ENDPOINT_CONFIGS, name, record)


def _serving(store: Store, name: str, config_name: str, stamp: str) -> dict:
    """The record of endpoint `name` serving `config_name` (its model must be in the store).

    It says what serve-local needs: the model's local path, its image and environment, and
    the newest registered version of that model (with its execution).
    """
    config = load(store, ENDPOINT_CONFIGS, config_name)
    variants = config.get("ProductionVariants") or []
    if not variants:
        raise EndpointError(f"endpoint configuration {config_name} has no ProductionVariants")
    variant = variants[0]
    model = load(store, MODELS, variant.get("ModelName"))
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    model_url = container.get("ModelDataUrl")
    try:
        model_path = store.path(model_url)
    except StoreError as err:
        raise EndpointError(f"model {model.get('ModelName')}: ModelDataUrl: {err}") from None
    if not model_path.is_file():
        raise EndpointError(f"model data {model_url} is not in the store ({model_path})")
    packages = registry.packages_for(store.registry, model_url)
    count = variant.get("InitialInstanceCount") or 1
    return {
        "EndpointName": name,
        "EndpointArn": arn("endpoint", name),
        "EndpointConfigName": config_name,
        "ModelName": model.get("ModelName"),
        "ModelDataUrl": model_url,
        "ModelDataPath": str(model_path),
        "Image": container.get("Image"),
        "Environment": container.get("Environment") or {},
        "InstanceType": variant.get("InstanceType"),
        "VariantName": variant.get("VariantName"),
        "ProductionVariants": [
            {
                "VariantName": variant.get("VariantName"),
                "CurrentWeight": 1.0,
                "DesiredWeight": 1.0,
                "CurrentInstanceCount": count,
                "DesiredInstanceCount": count,
            }
        ],
        "ModelPackageArn": packages[-1]["ModelPackageArn"] if packages else None,
        "ExecutionArn": packages[-1].get("ExecutionArn") if packages else None,
        "EndpointStatus": "InService",
        "LastModifiedTime": stamp,
    }


def deploy(
    store: Store, name: str, config_name: str, *, create: bool, deployment: dict | None = None
) -> dict:
    """Create (`create`) or update the endpoint `name` to serve `config_name`; its record.

    An update with a blue/green DeploymentConfig bakes as SageMaker's does: the endpoint is
    Updating on its old configuration (the old model goes on serving) until the bake ends,
    its wait interval and the old fleet's termination wait (at most MAX_LOCAL_BAKE_SECONDS
    here); describe() then finishes it.
    """
    path = _path(store, ENDPOINTS, name)
    previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    if create and previous is not None:
        raise EndpointError(f"Cannot create already existing endpoint {name!r}.")
    if not create and previous is None:
        raise NotFound(f"endpoint {name!r}")
    if previous is not None and previous.get("EndpointStatus") != "InService":
        raise EndpointError(
            f"Cannot update in-progress endpoint {name!r} ({previous.get('EndpointStatus')})."
        )
    stamp = now()
    record = _serving(store, name, config_name, stamp)
    record["CreationTime"] = previous.get("CreationTime", stamp) if previous else stamp
    policy = (deployment or {}).get("BlueGreenUpdatePolicy")
    if previous is None or policy is None:
        record["LastDeploymentConfig"] = deployment or {}
        write_json(path, record)
        return record
    routing = policy.get("TrafficRoutingConfiguration") or {}
    asked = routing.get("WaitIntervalInSeconds", 0) + policy.get("TerminationWaitInSeconds", 0)
    bake = min(asked, MAX_LOCAL_BAKE_SECONDS)
    alarms = (deployment.get("AutoRollbackConfiguration") or {}).get("Alarms") or []
    baking = {
        **{k: v for k, v in previous.items() if k not in ("FailureReason", "Pending")},
        "EndpointStatus": "Updating",
        "LastModifiedTime": stamp,
        "LastDeploymentConfig": deployment,
        "PendingDeploymentSummary": {"EndpointConfigName": config_name, "StartTime": stamp},
        # Local: what the endpoint becomes when the bake ends without an alarm.
        "Pending": {
            "Record": {**record, "LastDeploymentConfig": deployment},
            "BakeUntil": time.time() + bake,
            "Alarms": [alarm["AlarmName"] for alarm in alarms],
        },
    }
    write_json(path, baking)
    return baking


def describe(store: Store, name) -> dict:
    """DescribeEndpoint: the record, its bake finished first when it is due.

    At the end of the bake an alarm of the AutoRollbackConfiguration in ALARM keeps the old
    configuration (InService, with a FailureReason naming the alarm), as SageMaker's
    auto-rollback does; otherwise the endpoint serves the new one.
    """
    record = load(store, ENDPOINTS, name)
    pending = record.get("Pending")
    if not pending or time.time() < pending["BakeUntil"]:
        return record
    fired = alarms.firing(store, pending["Alarms"])
    stamp = now()
    if fired:
        config = record["PendingDeploymentSummary"]["EndpointConfigName"]
        kept = {k: v for k, v in record.items() if k not in ("Pending", "PendingDeploymentSummary")}
        record = {
            **kept,
            "EndpointStatus": "InService",
            "LastModifiedTime": stamp,
            "FailureReason": (
                f"Auto-rollback: alarm {', '.join(fired)} was in ALARM during the baking "
                f"period of the update to {config}"
            ),
        }
    else:
        record = {**pending["Record"], "LastModifiedTime": stamp}
    write_json(_path(store, ENDPOINTS, name), record)
    return record
