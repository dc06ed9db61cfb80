"""The local model registry: `<store>/registry/<group>/<version>.json`, one file a version.

Versions count from 1 within a group, as SageMaker numbers model package versions. A new
version's file is written exclusively (records.write_json), so two runs registering at once
get two numbers rather than one overwriting the other.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.local.records import arn, now, write_json
from pipeline.local.store import Store, StoreError

APPROVAL_STATUSES = ("Approved", "Rejected", "PendingManualApproval")


class RegistryError(ValueError):
    """A registration the registry refuses; the message says why."""


def package_arn(group: str, version: int) -> str:
    return arn("model-package", f"{group}/{version}")


def _group_dir(root: Path, group: str) -> Path:
    if not group or "/" in group or group.startswith("."):
        raise RegistryError(f"{group!r} is not a model package group name")
    return root / group


def versions(root: Path, group: str) -> list[dict]:
    """Every version of `group`, oldest first."""
    folder = _group_dir(root, group)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        if not path.stem.isdigit():
            continue
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except ValueError:
            continue  # damaged by hand: the other versions still list
    return sorted(found, key=lambda record: record["ModelPackageVersion"])


def packages_for(root: Path, model_url: str) -> list[dict]:
    """Every version, in any group, registered with this model artifact; oldest first."""
    found = []
    if root.is_dir():
        for group in sorted(p.name for p in root.iterdir() if p.is_dir()):
            found += [v for v in versions(root, group) if v.get("ModelDataUrl") == model_url]
    return sorted(found, key=lambda version: version.get("CreationTime") or "")


def version(root: Path, group: str, number: int) -> dict:
    """One version's record; RegistryError naming the versions there are."""
    records = versions(root, group)
    for record in records:
        if record["ModelPackageVersion"] == number:
            return record
    there = ", ".join(str(r["ModelPackageVersion"]) for r in records) or "none"
    raise RegistryError(f"model package group {group} has no version {number} (versions: {there})")


def set_status(root: Path, group: str, number: int, status: str, description=None) -> dict:
    """Approve or reject a version in place, as UpdateModelPackage does; the new record."""
    if status not in APPROVAL_STATUSES:
        raise RegistryError(f"{status!r} is not one of {', '.join(APPROVAL_STATUSES)}")
    record = {**version(root, group, number), "ModelApprovalStatus": status}
    record["LastModifiedTime"] = now()
    if description:
        record["ApprovalDescription"] = description
    write_json(_group_dir(root, group) / f"{number}.json", record)
    return record


def latest_approved(root: Path, group: str) -> dict | None:
    approved = [r for r in versions(root, group) if r.get("ModelApprovalStatus") == "Approved"]
    return approved[-1] if approved else None


def register(root: Path, group: str, package: dict) -> dict:
    """Add a version to `group` (created on first use); its record.

    `package` holds the resolved fields: ModelApprovalStatus, ModelDataUrl,
    InferenceSpecification, ModelMetrics, ExecutionArn and whatever else describes it.
    """
    status = package.get("ModelApprovalStatus", "PendingManualApproval")
    if status not in APPROVAL_STATUSES:
        raise RegistryError(
            f"ModelApprovalStatus {status!r} is not one of {', '.join(APPROVAL_STATUSES)}"
        )
    folder = _group_dir(root, group)
    version = max((r["ModelPackageVersion"] for r in versions(root, group)), default=0) + 1
    while True:
        record = {
            **package,
            "ModelPackageGroupName": group,
            "ModelPackageVersion": version,
            "ModelPackageArn": package_arn(group, version),
            "ModelPackageName": group,
            "ModelPackageStatus": "Completed",
            "ModelApprovalStatus": status,
            "CreationTime": now(),
        }
        try:
            write_json(folder / f"{version}.json", record, exclusive=True)
        except FileExistsError:
            version += 1
            continue
        return record


def package_from_step(store: Store, arguments: dict, execution_arn: str) -> tuple[str, dict]:
    """(group, package) for `register` from a RegisterModel step's resolved arguments.

    ModelMetrics keeps the content of the model-quality statistics (evaluation.json), read
    from the store, and ModelMetricsSources the URIs the step gave.
    """
    group = arguments.get("ModelPackageGroupName")
    if not group:
        raise RegistryError("RegisterModel needs a ModelPackageGroupName")
    containers = (arguments.get("InferenceSpecification") or {}).get("Containers") or []
    metrics = arguments.get("ModelMetrics") or {}
    statistics = (metrics.get("ModelQuality") or {}).get("Statistics") or {}
    content = None
    if statistics.get("S3Uri"):
        try:
            content = json.loads(store.read_bytes(statistics["S3Uri"]))
        except StoreError as err:
            raise RegistryError(f"ModelMetrics.ModelQuality.Statistics: {err}") from None
        except ValueError as err:
            raise RegistryError(
                f"ModelMetrics.ModelQuality.Statistics {statistics['S3Uri']} is not JSON: {err}"
            ) from None
    package = {
        key: value
        for key, value in arguments.items()
        if key not in ("ModelPackageGroupName", "ModelMetrics")
    }
    package.update(
        {
            "ModelDataUrl": containers[0].get("ModelDataUrl") if containers else None,
            "ModelMetrics": content,
            "ModelMetricsSources": metrics,
            "ExecutionArn": execution_arn,
        }
    )
    return group, package
