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
   "latest_version": {...}}
and prints the reason, so the step's log says why registration and deployment were skipped.

Runs in the training image (boto3 is there); on SageMaker with the execution role, under
`run-local` against the local runner's SageMaker API (AWS_ENDPOINT_URL_SAGEMAKER).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dogbreed_jobs import contract

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


def _missing(error) -> bool:
    """SageMaker answers a Describe of a missing resource with ValidationException."""
    response = getattr(error, "response", {}) or {}
    code = response.get("Error", {}).get("Code", "")
    message = response.get("Error", {}).get("Message", "")
    return code in ("ValidationException", "ResourceNotFound") and (
        "not find" in message.lower() or "not found" in message.lower()
    )


def _model_url(container: dict | None) -> str | None:
    return (container or {}).get("ModelDataUrl")


def endpoint_state(client, endpoint_name: str) -> dict | None:
    """{"name", "status", "config", "model", "model_data"} of the endpoint, or None."""
    from botocore.exceptions import ClientError

    try:
        endpoint = client.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as error:
        if _missing(error):
            return None
        raise
    state = {
        "name": endpoint_name,
        "status": endpoint.get("EndpointStatus"),
        "config": endpoint.get("EndpointConfigName"),
        "model": None,
        "model_data": None,
    }
    config = client.describe_endpoint_config(EndpointConfigName=state["config"])
    variants = config.get("ProductionVariants") or []
    if variants:
        state["model"] = variants[0].get("ModelName")
        model = client.describe_model(ModelName=state["model"])
        containers = model.get("Containers") or [None]
        state["model_data"] = _model_url(model.get("PrimaryContainer") or containers[0])
    return state


def latest_version(client, group: str) -> dict | None:
    """{"arn", "version", "status", "model_data"} of the group's newest version, or None."""
    from botocore.exceptions import ClientError

    try:
        listed = client.list_model_packages(
            ModelPackageGroupName=group,
            ModelPackageType="Versioned",
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=1,
        )
    except ClientError as error:
        if _missing(error):
            return None  # RegisterModel creates the group on first use
        raise
    summaries = listed.get("ModelPackageSummaryList") or []
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


def decide(model_data: str, endpoint: dict | None, latest: dict | None) -> dict:
    """The report: whether `model_data` is new, and why, in one sentence."""
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
    }


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model-data", required=True, help="the trained model.tar.gz's S3 URI")
    parser.add_argument("--endpoint-name", required=True)
    parser.add_argument("--model-package-group", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
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
    report = decide(args.model_data, endpoint, latest)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / contract.MODEL_CHANGE_FILE
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(report["reason"])
    return 0
