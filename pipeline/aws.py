"""The AWS operations behind the CLI: one boto3 session, clients, and what upsert, start,
status and schedule do with them.

Every client comes from one `boto3.Session`, so the standard environment applies: AWS_PROFILE
(or --profile), AWS_REGION / AWS_DEFAULT_REGION (or --region), AWS_ENDPOINT_URL and its
per-service variants (moto's server in tests, VPC endpoints for users), and the usual
credential chain. Clients use botocore's "standard" retry mode with a bounded number of
attempts (AWS_RETRY_MODE / AWS_MAX_ATTEMPTS override both); calls that create something
carry a ClientRequestToken, so a retried create never makes two.

boto3 is imported inside `connect`: importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable
from functools import cached_property

from pipeline.config import REGION_RE, PipelineConfig
from pipeline.errors import NO_REGION, ExecutionFailed, UsageError, one_line

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
USER_AGENT = "dogbreed-pipeline/0.1.0"
# The SageMaker SDK's threshold: larger definitions go to S3 (PipelineDefinitionS3Location).
INLINE_DEFINITION_LIMIT = 100 * 1024
SHA256_METADATA = "sha256"  # x-amz-meta-sha256 on every object we upload
TERMINAL_STATUSES = ("Succeeded", "Failed", "Stopped")

EXECUTION_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:(?P<region>[a-z0-9-]+):\d{12}:pipeline/"
    r"(?P<pipeline>[a-zA-Z0-9-]+)/execution/[a-zA-Z0-9]+$"
)


def endpoint_overridden() -> bool:
    """True when AWS_ENDPOINT_URL (or a per-service variant) redirects the clients."""
    return any(key.startswith("AWS_ENDPOINT_URL") and value for key, value in os.environ.items())


def known_regions() -> set[str]:
    """Every region of every partition botocore knows (offline: its bundled endpoints.json)."""
    from botocore.loaders import create_loader

    endpoints = create_loader().load_data("endpoints")
    return {region for partition in endpoints["partitions"] for region in partition["regions"]}


def check_region(region: str) -> None:
    if not REGION_RE.match(region) and region not in known_regions():
        raise UsageError(
            f"region {region!r} is not an AWS region name: pass --region or set AWS_REGION "
            "(e.g. us-east-1)"
        )
    if not endpoint_overridden() and region not in known_regions():
        raise UsageError(
            f"unknown AWS region {region!r}: check --region / AWS_REGION (e.g. us-east-1); "
            "if the region is new, upgrade boto3"
        )


@dataclasses.dataclass
class Aws:
    """A boto3 session and the clients made from it, created on first use."""

    session: object  # boto3.Session

    @property
    def region(self) -> str:
        return self.session.region_name

    @cached_property
    def retries(self) -> dict:
        """botocore's "standard" mode and MAX_ATTEMPTS, unless the user configured retries
        (AWS_RETRY_MODE / AWS_MAX_ATTEMPTS, or retry_mode / max_attempts in the profile)."""
        profile = self.session._session.get_scoped_config()  # the profile's settings
        mode = os.environ.get("AWS_RETRY_MODE") or profile.get("retry_mode") or "standard"
        attempts = os.environ.get("AWS_MAX_ATTEMPTS") or profile.get("max_attempts")
        if attempts is not None and not str(attempts).isdigit():
            raise UsageError(
                f"AWS_MAX_ATTEMPTS / max_attempts must be a whole number: {attempts!r}"
            )
        return {"mode": mode, "total_max_attempts": int(attempts or MAX_ATTEMPTS)}

    def client(self, service: str):
        from botocore.config import Config

        config = Config(retries=self.retries, user_agent_extra=USER_AGENT)
        return self.session.client(service, config=config)

    @cached_property
    def sagemaker(self):
        return self.client("sagemaker")

    @cached_property
    def cloudwatch(self):
        return self.client("cloudwatch")

    @cached_property
    def autoscaling(self):
        return self.client("application-autoscaling")

    def release_clients(self):
        """The clients a release calls (dogbreed_jobs.release.Clients)."""
        from dogbreed_jobs.release import Clients

        return Clients(self.sagemaker, self.cloudwatch, self.autoscaling)

    @cached_property
    def s3(self):
        return self.client("s3")

    @cached_property
    def sts(self):
        return self.client("sts")

    @cached_property
    def scheduler(self):
        return self.client("scheduler")

    def account_id(self) -> str:
        return self.sts.get_caller_identity()["Account"]


def connect(region: str | None = None, profile: str | None = None) -> Aws:
    """A session from the standard environment; --region and --profile win over it."""
    import boto3

    # The AWS CLI's order: --region, AWS_REGION, AWS_DEFAULT_REGION, the profile's region
    # (boto3 itself reads only the last two).
    region = region or os.environ.get("AWS_REGION") or None
    session = boto3.Session(profile_name=profile, region_name=region)
    if not session.region_name:
        raise UsageError(NO_REGION)
    check_region(session.region_name)
    return Aws(session)


def default_bucket(region: str, account: str) -> str:
    """The SageMaker SDK's default bucket name for an account and region."""
    return f"sagemaker-{region}-{account}"


def bucket_or_default(aws: Aws, bucket: str | None) -> tuple[str, str | None]:
    """(bucket, the owner to check it against): `bucket`, else SageMaker's default bucket of
    the caller's account, which must then be the caller's own."""
    if bucket is not None:
        return bucket, None
    owner = aws.account_id()
    bucket = default_bucket(aws.region, owner)
    log.info("bucket: %s (the SageMaker default for this account and region)", bucket)
    return bucket, owner


def is_missing(exc) -> bool:
    """SageMaker reports a missing pipeline or execution as ResourceNotFound or, for some
    operations, as a ValidationException whose message says so."""
    message = exc.response.get("Error", {}).get("Message", "")
    return _status(exc) in ("ResourceNotFound", "ValidationException") and bool(
        re.search(r"(?i)does not exist|could not find|not found", message)
    )


def _status(exc) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# --------------------------------------------------------------------------- S3


def check_bucket(aws: Aws, bucket: str, expected_owner: str | None = None) -> None:
    """Fail with a clear message unless `bucket` exists, is ours to use, and is in our region."""
    from botocore.exceptions import ClientError

    kwargs = {"Bucket": bucket}
    if expected_owner:
        # The default name is predictable: never write code into someone else's bucket.
        kwargs["ExpectedBucketOwner"] = expected_owner
    try:
        response = aws.s3.head_bucket(**kwargs)
    except ClientError as exc:
        code = _status(exc)
        if code in ("404", "NoSuchBucket"):
            raise UsageError(
                f"bucket {bucket!r} does not exist: create it (aws s3 mb s3://{bucket} "
                f"--region {aws.region}) or pass --bucket with an existing one"
            ) from None
        if code in ("403", "AccessDenied"):
            owner = " or belongs to another account" if expected_owner else ""
            raise UsageError(
                f"no access to bucket {bucket!r} (403): your identity lacks s3:ListBucket on "
                f"it{owner}; pass --bucket with a bucket you own"
            ) from None
        if code in ("301", "PermanentRedirect", "400"):
            other = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            where = other.get("x-amz-bucket-region", "another region")
            raise UsageError(
                f"bucket {bucket!r} is in {where}, not {aws.region}: SageMaker jobs need a bucket "
                "in the pipeline's region; pass --bucket or --region to match"
            ) from None
        raise
    where = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
    if where and where != aws.region:
        raise UsageError(
            f"bucket {bucket!r} is in {where}, not {aws.region}: SageMaker jobs need a bucket "
            "in the pipeline's region; pass --bucket or --region to match"
        )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload_objects(aws: Aws, bucket: str, objects: dict[str, bytes]) -> tuple[int, int]:
    """Upload each key whose content differs from what is stored; returns (uploaded, skipped).

    Sameness is the sha256 recorded in the object's metadata at upload time (ETags are not
    content hashes for multipart or KMS-encrypted objects).
    """
    from botocore.exceptions import ClientError

    uploaded = skipped = 0
    for key, data in sorted(objects.items()):
        digest = sha256_hex(data)
        try:
            head = aws.s3.head_object(Bucket=bucket, Key=key)
            stored = head.get("Metadata", {}).get(SHA256_METADATA)
        except ClientError as exc:
            # 404: not there yet. 403: without s3:ListBucket a missing key reads as 403.
            if _status(exc) not in ("404", "NoSuchKey", "403"):
                raise
            stored = None
        if stored == digest:
            log.debug("s3://%s/%s is up to date", bucket, key)
            skipped += 1
            continue
        aws.s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata={SHA256_METADATA: digest})
        log.debug("uploaded s3://%s/%s (%d bytes)", bucket, key, len(data))
        uploaded += 1
    return uploaded, skipped


# --------------------------------------------------------------------------- pipeline


def upsert_pipeline(
    aws: Aws,
    config: PipelineConfig,
    definition: str,
    *,
    description: str,
    tags: Iterable[tuple[str, str]] = (),
) -> tuple[str, bool]:
    """Create the pipeline, or update it when it exists; returns (ARN, created).

    Tags are set on create and added on update (AddTags overwrites a key's value; tags
    missing from the command line are left in place, like the SageMaker SDK's upsert).
    """
    from botocore.exceptions import ClientError

    tag_list = [{"Key": key, "Value": value} for key, value in tags]
    body = definition.encode("utf-8")
    if len(body) > INLINE_DEFINITION_LIMIT:
        key = f"{config.prefix}/definitions/{config.pipeline_name}-{sha256_hex(body)[:16]}.json"
        upload_objects(aws, config.bucket, {key: body})
        source = {"PipelineDefinitionS3Location": {"Bucket": config.bucket, "ObjectKey": key}}
        log.info("definition is %d KB: stored at s3://%s/%s", len(body) // 1024, config.bucket, key)
    else:
        source = {"PipelineDefinition": definition}
    common = {
        "PipelineName": config.pipeline_name,
        "PipelineDisplayName": config.pipeline_name,
        "PipelineDescription": description,
        "RoleArn": config.role_arn,
        **source,
    }
    try:
        create = {"ClientRequestToken": uuid.uuid4().hex, **common}
        if tag_list:
            create["Tags"] = tag_list
        arn = aws.sagemaker.create_pipeline(**create)["PipelineArn"]
        return arn, True
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        if not (_status(exc) in ("ValidationException", "ResourceInUse") and "exists" in message):
            raise
    arn = aws.sagemaker.update_pipeline(**common)["PipelineArn"]
    if tag_list:
        aws.sagemaker.add_tags(ResourceArn=arn, Tags=tag_list)
    return arn, False


def describe_pipeline(aws: Aws, pipeline_name: str) -> dict:
    """describe_pipeline, with its definition parsed; a clear error when there is none."""
    from botocore.exceptions import ClientError

    try:
        response = aws.sagemaker.describe_pipeline(PipelineName=pipeline_name)
    except ClientError as exc:
        if is_missing(exc):
            raise UsageError(
                f"pipeline {pipeline_name!r} does not exist in {aws.region}: create it with "
                "`dogbreed-pipeline upsert --role-arn ...`, or check --pipeline-name / --region"
            ) from None
        raise
    definition = response.get("PipelineDefinition")
    response["Definition"] = json.loads(definition) if isinstance(definition, str) else definition
    return response


def start_execution(
    aws: Aws,
    pipeline_name: str,
    parameters: list[dict[str, str]],
    display_name: str | None = None,
) -> str:
    kwargs = {
        "PipelineName": pipeline_name,
        "PipelineParameters": parameters,
        "ClientRequestToken": uuid.uuid4().hex,
    }
    if display_name:
        kwargs["PipelineExecutionDisplayName"] = display_name
    return aws.sagemaker.start_pipeline_execution(**kwargs)["PipelineExecutionArn"]


def latest_execution_arn(aws: Aws, pipeline_name: str) -> str:
    response = aws.sagemaker.list_pipeline_executions(
        PipelineName=pipeline_name, SortBy="CreationTime", SortOrder="Descending", MaxResults=10
    )
    summaries = response.get("PipelineExecutionSummaries", [])
    if not summaries:
        raise UsageError(
            f"pipeline {pipeline_name!r} has no executions yet: start one with "
            "`dogbreed-pipeline start`"
        )
    return max(summaries, key=lambda summary: summary["StartTime"])["PipelineExecutionArn"]


def describe_execution(aws: Aws, execution_arn: str) -> dict:
    from botocore.exceptions import ClientError

    try:
        return aws.sagemaker.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
    except ClientError as exc:
        if is_missing(exc):
            raise UsageError(
                f"no pipeline execution {execution_arn} in {aws.region}: check the ARN "
                "(`dogbreed-pipeline status` shows the latest)"
            ) from None
        raise


def listed_steps(aws: Aws, execution_arn: str) -> list[dict]:
    """The execution's steps, or none with a warning when they cannot be listed."""
    from botocore.exceptions import ClientError

    try:
        return execution_steps(aws, execution_arn)
    except ClientError as exc:
        log.warning("cannot list the steps: %s", one_line(exc))
        return []


def execution_steps(aws: Aws, execution_arn: str) -> list[dict]:
    """The execution's steps, oldest first."""
    steps, token = [], None
    while True:
        kwargs = {"PipelineExecutionArn": execution_arn, "SortOrder": "Ascending"}
        if token:
            kwargs["NextToken"] = token
        response = aws.sagemaker.list_pipeline_execution_steps(**kwargs)
        steps.extend(response.get("PipelineExecutionSteps", []))
        token = response.get("NextToken")
        if not token:
            return steps


# Debugger is closed to new AWS customers since 2026-07-30, and what such an account's
# CreateTrainingJob answers is undocumented: a failure that names Debugger (or the fields only
# Debugger uses) and reads as a refusal is taken for one.
_DEBUGGER_TERMS = re.compile(
    r"debugger|DebugHookConfig|DebugRuleConfiguration|ProfilerConfig|ProfilerRuleConfiguration"
    r"|profiler|smdebug",
    re.IGNORECASE,
)
_REFUSAL_TERMS = re.compile(
    r"not authori[sz]ed|access ?denied|not (?:available|supported|enabled|allowed|permitted)"
    r"|no longer|unavailable|not subscribed|new customers|opt.?in",
    re.IGNORECASE,
)
DEBUGGER_HINT = (
    "SageMaker Debugger looks unavailable to this account (it is closed to new AWS customers "
    "since 2026-07-30): upsert with --debugger pipeline, which runs the same rules in a "
    "processing step, or --debugger off"
)


def debugger_hint(reasons: Iterable[str | None]) -> str | None:
    """DEBUGGER_HINT when one of the failure reasons is a refusal of Debugger, else None."""
    for reason in reasons:
        if reason and _DEBUGGER_TERMS.search(reason) and _REFUSAL_TERMS.search(reason):
            return DEBUGGER_HINT
    return None


def wait_for_execution(
    aws: Aws,
    execution_arn: str,
    *,
    interval: float,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
    """Poll until the execution ends, logging each step's status change; return its description.

    Raises ExecutionFailed when it ends Failed or Stopped, or when `timeout` passes first.
    """
    from botocore.exceptions import ClientError

    started, seen, steps_ok, reasons = clock(), {}, True, []
    while True:
        execution = describe_execution(aws, execution_arn)
        if steps_ok:
            try:
                for step in execution_steps(aws, execution_arn):
                    name, status = step.get("StepName", "?"), step.get("StepStatus", "?")
                    if seen.get(name) != status:
                        seen[name] = status
                        reason = step.get("FailureReason")
                        reasons.append(reason)
                        log.info("step %s: %s%s", name, status, f" ({reason})" if reason else "")
            except ClientError as exc:
                # Progress is a nicety: without the permission, keep polling the status alone.
                steps_ok = False
                log.warning(
                    "cannot list steps (%s); showing the execution status only", one_line(exc)
                )
        status = execution["PipelineExecutionStatus"]
        if status in TERMINAL_STATUSES:
            log.info("execution %s", status)
            if status != "Succeeded":
                reason = execution.get("FailureReason") or "no reason given"
                hint = debugger_hint([reason, *reasons])
                raise ExecutionFailed(
                    f"execution {status.lower()}: {one_line(reason)} "
                    f"(details: dogbreed-pipeline status {execution_arn})"
                    + (f"; {hint}" if hint else "")
                )
            return execution
        if timeout is not None and clock() - started >= timeout:
            raise ExecutionFailed(
                f"execution still {status} after {timeout:g} s; it keeps running "
                f"(dogbreed-pipeline status {execution_arn})"
            )
        sleep(interval)


def stop_execution(aws: Aws, execution_arn: str) -> str:
    """Ask SageMaker to stop an Executing execution; its status before the call.

    A finished execution is refused (UsageError) with nothing changed; one already Stopping
    is left alone.
    """
    status = describe_execution(aws, execution_arn)["PipelineExecutionStatus"]
    if status in TERMINAL_STATUSES:
        raise UsageError(
            f"execution {execution_arn} already ended {status}: there is nothing to stop"
            + (" (`dogbreed-pipeline retry` runs a failed one again)" if status == "Failed" else "")
        )
    if status == "Executing":
        aws.sagemaker.stop_pipeline_execution(
            PipelineExecutionArn=execution_arn, ClientRequestToken=uuid.uuid4().hex
        )
    return status


def retry_execution(aws: Aws, execution_arn: str) -> str:
    """Run a failed execution again from its failed steps (same execution ARN).

    Only a Failed execution is retried here; the service judges the rest (for example a
    definition changed since), and its answer comes back as one line.
    """
    status = describe_execution(aws, execution_arn)["PipelineExecutionStatus"]
    if status != "Failed":
        raise UsageError(
            f"execution {execution_arn} is {status}: only a Failed execution can be retried"
            + (" (`dogbreed-pipeline start` runs a new one)" if status in TERMINAL_STATUSES else "")
        )
    return aws.sagemaker.retry_pipeline_execution(
        PipelineExecutionArn=execution_arn, ClientRequestToken=uuid.uuid4().hex
    )["PipelineExecutionArn"]


# --------------------------------------------------------------------------- schedules


def upsert_schedule(
    aws: Aws,
    *,
    name: str,
    group: str,
    expression: str,
    timezone: str | None,
    pipeline_arn: str,
    role_arn: str,
    parameters: list[dict[str, str]],
    description: str,
) -> tuple[str, bool]:
    """Create the schedule, or update it when it exists; returns (schedule ARN, created)."""
    from botocore.exceptions import ClientError

    # {} starts the pipeline with its defaults (the SDK's put_triggers sends the same).
    pipeline_parameters = {"PipelineParameterList": parameters} if parameters else {}
    request = {
        "Name": name,
        "GroupName": group,
        "ScheduleExpression": expression,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": pipeline_arn,
            "RoleArn": role_arn,
            "SageMakerPipelineParameters": pipeline_parameters,
        },
        "State": "ENABLED",
        "Description": description,
    }
    if timezone:
        request["ScheduleExpressionTimezone"] = timezone
    try:
        arn = aws.scheduler.create_schedule(ClientToken=uuid.uuid4().hex, **request)
        return arn["ScheduleArn"], True
    except ClientError as exc:
        if _status(exc) != "ConflictException":
            raise
    return aws.scheduler.update_schedule(**request)["ScheduleArn"], False


def delete_schedule(aws: Aws, *, name: str, group: str) -> bool:
    """Delete the schedule; False when there was none."""
    from botocore.exceptions import ClientError

    try:
        aws.scheduler.delete_schedule(Name=name, GroupName=group, ClientToken=uuid.uuid4().hex)
    except ClientError as exc:
        if _status(exc) == "ResourceNotFoundException":
            return False
        raise
    return True
