"""Is the trained model new? Compare it with what the endpoint serves and the registry holds.

A scheduled execution over unchanged data gets every job step from the cache, so TrainModel
hands on the same model.tar.gz URI as the execution before it. Registering that again would
add a duplicate version, and deploying it would replace the endpoint's instances with the
same model. This step reads, with the job's role:
  - the endpoint: DescribeEndpoint -> DescribeEndpointConfig -> DescribeModel (ModelDataUrl);
  - the model package group's newest version, whatever its approval status (a Pending one
    awaits a person, a Rejected one was refused: neither should come back as a new version).
It writes `model_change.json` (a PropertyFile the next condition reads):
  {"decision": "new" | "unchanged", "reason": ..., "model_data": ..., "endpoint": {...},
   "latest_version": {...}, "champion": {...}}
and prints the reason, so the step's log says why registration and deployment were skipped.

`champion` is what EvaluateModel scores beside the new model (the champion/challenger gate):
  {"status": "serving" | "same" | "none" | "unreadable", "model_data": ..., "uri": ...,
   "note": ...}
`uri` is the serving model.tar.gz when there is one to score, else `--no-champion-uri` (a
folder without a model: EvaluateModel's input cannot be absent); `note` says why in words.

Runs in the training image (boto3 is there); on SageMaker with the execution role, under
`run-local` against the local runner's SageMaker API (AWS_ENDPOINT_URL_SAGEMAKER).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dogbreed_jobs import contract
from dogbreed_jobs.contract import (
    CHAMPION_NONE,
    CHAMPION_SAME,
    CHAMPION_SERVING,
    CHAMPION_UNREADABLE,
)

# An endpoint in these states serves (or is about to serve) its configuration's model; a
# Failed one serves nothing, so the model is deployed again.
SERVING_STATUSES = (
    "InService",
    "Creating",
    "Updating",
    "SystemUpdating",
    "RollingBack",
    "UpdateRollbackFailed",
)


def missing(error) -> bool:
    """SageMaker answers a Describe of a missing resource with ValidationException."""
    response = getattr(error, "response", {}) or {}
    code = response.get("Error", {}).get("Code", "")
    message = response.get("Error", {}).get("Message", "")
    return code in ("ValidationException", "ResourceNotFound") and (
        "not find" in message.lower() or "not found" in message.lower()
    )


def _model_url(container: dict | None) -> str | None:
    return (container or {}).get("ModelDataUrl")


def describe_endpoint(client, endpoint_name: str) -> dict | None:
    """DescribeEndpoint's answer, or None when there is no such endpoint."""
    from botocore.exceptions import ClientError

    try:
        return client.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as error:
        if missing(error):
            return None
        raise


def endpoint_state(client, endpoint_name: str) -> dict | None:
    """{"name", "status", "config", "model", "model_data"} of the endpoint, or None."""
    from botocore.exceptions import ClientError

    endpoint = describe_endpoint(client, endpoint_name)
    if endpoint is None:
        return None
    state = {
        "name": endpoint_name,
        "status": endpoint.get("EndpointStatus"),
        "config": endpoint.get("EndpointConfigName"),
        "model": None,
        "model_data": None,
        # Why model_data is None although the endpoint exists.
        "unreadable": None,
    }
    try:
        config = client.describe_endpoint_config(EndpointConfigName=state["config"])
        variants = config.get("ProductionVariants") or []
        if not variants:
            state["unreadable"] = f"configuration {state['config']} has no production variant"
            return state
        state["model"] = variants[0].get("ModelName")
        model = client.describe_model(ModelName=state["model"])
    except ClientError as error:
        # An endpoint goes on serving after its configuration or model was deleted: what it
        # serves can no longer be read, which is not the same as serving nothing.
        if not missing(error):
            raise
        state["unreadable"] = f"what it serves is gone ({error.response['Error']['Message']})"
        return state
    containers = model.get("Containers") or [None]
    state["model_data"] = _model_url(model.get("PrimaryContainer") or containers[0])
    if not state["model_data"]:
        state["unreadable"] = f"model {state['model']} has no ModelDataUrl"
    return state


def newest_versions(client, group: str, count: int, **filters) -> list[dict]:
    """The summaries of the group's `count` newest versions (ListModelPackages, `filters`
    added), newest first; none while the group does not exist."""
    from botocore.exceptions import ClientError

    try:
        listed = client.list_model_packages(
            ModelPackageGroupName=group,
            ModelPackageType="Versioned",
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=count,
            **filters,
        )
    except ClientError as error:
        if missing(error):
            return []  # RegisterModel creates the group on first use
        raise
    return listed.get("ModelPackageSummaryList") or []


def latest_version(client, group: str) -> dict | None:
    """{"arn", "version", "status", "model_data"} of the group's newest version, or None."""
    summaries = newest_versions(client, group, 1)
    if not summaries:
        return None
    package = client.describe_model_package(ModelPackageName=summaries[0]["ModelPackageArn"])
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or [None]
    return {
        "arn": package.get("ModelPackageArn"),
        "version": package.get("ModelPackageVersion"),
        "status": package.get("ModelApprovalStatus"),
        "model_data": _model_url(containers[0]),
    }


def champion(model_data: str, endpoint: dict | None, no_champion_uri: str | None) -> dict:
    """What EvaluateModel scores beside `model_data`: the endpoint's model, and why."""
    # Strings only, never null: the pipeline passes these to EvaluateModel as arguments.
    block = {"model_data": "", "uri": no_champion_uri}
    if endpoint is None:
        return {**block, "status": CHAMPION_NONE, "note": "no endpoint yet (a first deployment)"}
    name, status = endpoint["name"], endpoint["status"]
    if status not in SERVING_STATUSES:
        note = f"endpoint {name} is {status} and serves nothing (as a first deployment)"
        return {**block, "status": CHAMPION_NONE, "note": note}
    if endpoint["model_data"] is None:
        note = f"endpoint {name} serves a model this pipeline cannot read: {endpoint['unreadable']}"
        return {**block, "status": CHAMPION_UNREADABLE, "note": note}
    block["model_data"] = endpoint["model_data"]
    if endpoint["model_data"] == model_data:
        return {**block, "status": CHAMPION_SAME, "note": f"endpoint {name} serves this model"}
    note = f"endpoint {name} serves {endpoint['model_data']} (model {endpoint['model']})"
    return {**block, "status": CHAMPION_SERVING, "uri": endpoint["model_data"], "note": note}


def decide(
    model_data: str,
    endpoint: dict | None,
    latest: dict | None,
    no_champion_uri: str | None = None,
) -> dict:
    """The report: whether `model_data` is new, and why, in one sentence; and the champion."""
    if endpoint and endpoint["status"] in SERVING_STATUSES and endpoint["model_data"] == model_data:
        decision = "unchanged"
        reason = (
            f"endpoint {endpoint['name']} already serves {model_data} (model {endpoint['model']}, "
            f"configuration {endpoint['config']}, {endpoint['status']}): registration and "
            "deployment skipped"
        )
    elif latest and latest["model_data"] == model_data:
        decision = "unchanged"
        reason = (
            f"{model_data} is already version {latest['version']} of the model package group "
            f"({latest['status']}): registration and deployment skipped"
        )
        if latest["status"] == "PendingManualApproval":
            command = f"dogbreed-pipeline approve --model-version {latest['version']}"
            reason += f"; `{command}` deploys it"
    else:
        decision = "new"
        reason = f"{model_data} is a new model: it is registered"
    return {
        "decision": decision,
        "reason": reason,
        "model_data": model_data,
        "endpoint": endpoint,
        "latest_version": latest,
        "champion": champion(model_data, endpoint, no_champion_uri),
    }


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model-data", required=True, help="the trained model.tar.gz's S3 URI")
    parser.add_argument("--endpoint-name", required=True)
    parser.add_argument("--model-package-group", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument(
        "--no-champion-uri",
        help="the champion's URI when nothing serving can be scored (a folder without a model)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "sagemaker", region_name=args.region, config=Config(retries={"mode": "standard"})
    )
    try:
        endpoint = endpoint_state(client, args.endpoint_name)
        latest = latest_version(client, args.model_package_group)
    except (BotoCoreError, ClientError) as error:
        # Never decide "unchanged" on a guess: a model that cannot be compared fails the step,
        # and the message names the call the role could not make.
        print(f"cannot compare with the deployed model: {error}", file=sys.stderr)
        return 1
    report = decide(args.model_data, endpoint, latest, args.no_champion_uri)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / contract.MODEL_CHANGE_FILE
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(report["reason"])
    print(f"champion for the evaluation: {report['champion']['note']}")
    return 0
