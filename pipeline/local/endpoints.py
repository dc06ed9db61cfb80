"""Model, EndpointConfig and Endpoint steps, as records in the store.

`<store>/models/<name>.json` and `<store>/endpoint-configs/<name>.json` hold what
CreateModel and CreateEndpointConfig were given; `<store>/endpoints/<name>.json` is the
deployed endpoint that `serve-local` reads (docs/local-runner.md): the model's S3 URI and
its local path, the container environment, and the registered model package it came from.
Deploying an existing EndpointName updates its record in place, keeping its CreationTime,
as UpdateEndpoint does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.config import DEFAULT_ENDPOINT_INSTANCE_TYPE, ENDPOINT_NAME_RE
from pipeline.local import properties, registry
from pipeline.local.records import arn, now, write_json
from pipeline.local.store import Store, StoreError

MODELS = "models"
ENDPOINT_CONFIGS = "endpoint-configs"
# Model and configuration names become file names: nothing that could leave their folder.
_RESOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")


class EndpointError(ValueError):
    """A model, configuration or endpoint that cannot be created; the message says why."""


def is_pipeline_config(endpoint_name: str, config_name: str) -> bool:
    """The names run-local's deploy step and `approve --store` give configurations."""
    pattern = rf"{re.escape(endpoint_name)}-(local-\d{{8}}T\d{{6}}-[0-9a-f]+|v\d+at\d+)"
    return re.fullmatch(pattern, config_name) is not None


def _resource_path(store: Store, kind: str, name) -> Path:
    if not isinstance(name, str) or not _RESOURCE_NAME_RE.match(name):
        raise EndpointError(f"{name!r} is not a usable {kind[:-1].replace('-', ' ')} name")
    return store.root / kind / f"{name}.json"


def load(store: Store, kind: str, name) -> dict:
    path = _resource_path(store, kind, name)
    if not path.is_file():
        raise EndpointError(f"there is no {kind[:-1].replace('-', ' ')} {name!r} ({path})")
    return json.loads(path.read_text(encoding="utf-8"))


def create_model(store: Store, name: str, arguments: dict) -> dict:
    model = properties.model(arguments, name=name, arn=arn("model", name), created=now())
    write_json(_resource_path(store, MODELS, name), model)
    return model


def create_endpoint_config(store: Store, name: str, arguments: dict) -> dict:
    config = properties.endpoint_config(
        arguments, name=name, arn=arn("endpoint-config", name), created=now()
    )
    write_json(_resource_path(store, ENDPOINT_CONFIGS, name), config)
    return config


def deploy(store: Store, arguments: dict, execution_arn: str) -> tuple[dict, dict, bool]:
    """(endpoint record, step properties, whether it was created rather than updated)."""
    name = arguments.get("EndpointName")
    config_name = arguments.get("EndpointConfigName")
    if not name or not config_name:
        raise EndpointError("an Endpoint step needs EndpointName and EndpointConfigName")
    if not ENDPOINT_NAME_RE.match(str(name)):
        raise EndpointError(f"{name!r} is not an endpoint name (letters, digits, hyphens; <= 63)")
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
    path = store.endpoints / f"{name}.json"
    previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    stamp = now()
    record = {
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
        "ModelPackageArn": packages[-1]["ModelPackageArn"] if packages else None,
        "ExecutionArn": execution_arn,
        "EndpointStatus": "InService",
        "CreationTime": previous.get("CreationTime", stamp) if previous else stamp,
        "LastModifiedTime": stamp,
    }
    write_json(path, record)
    return record, properties.endpoint(arguments, record), previous is None


def deploy_package(
    store: Store,
    container: dict,
    *,
    endpoint_name: str,
    config_name: str,
    model_name: str,
    instance_type: str | None,
    execution_arn: str | None,
) -> tuple[dict, bool]:
    """Deploy a registered version's container as the deploy steps would: a model, a new
    configuration, the endpoint created or updated; (endpoint record, created)."""
    create_model(store, model_name, {"PrimaryContainer": container})
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": model_name,
        "InitialInstanceCount": 1,
        "InstanceType": instance_type or DEFAULT_ENDPOINT_INSTANCE_TYPE,
    }
    create_endpoint_config(store, config_name, {"ProductionVariants": [variant]})
    arguments = {"EndpointName": endpoint_name, "EndpointConfigName": config_name}
    record, _, created = deploy(store, arguments, execution_arn)
    return record, created
