"""pipeline.aws and pipeline.errors against moto: uploads, upsert, waits, schedules, errors."""

from __future__ import annotations

import json
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError
from helpers.awsfakes import (
    ACCOUNT,
    REGION,
    ROLE,
    SCHEDULER_ROLE,
    aws_error,
    create_pipeline,
    moto_execution,
    ok,
    steps_response,
)

from pipeline import aws
from pipeline.config import PipelineConfig
from pipeline.errors import AwsError, ExecutionFailed, UsageError, from_botocore, redact

# aws_env, moto, calls: a clean AWS environment, moto, and a recorder of AWS calls.

BUCKET = "dogbreed-test-artifacts"
CONFIG = PipelineConfig(bucket=BUCKET, role_arn=ROLE, region=REGION)


@pytest.fixture
def bucket(moto):
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    return BUCKET


def test_clients_use_standard_retries_with_bounded_attempts(aws_env):
    client = aws.connect(region=REGION).sagemaker
    retries = client.meta.config.retries
    assert retries["mode"] == "standard"
    assert retries["total_max_attempts"] == aws.MAX_ATTEMPTS


def test_retry_settings_from_the_environment_win(aws_env):
    aws_env.setenv("AWS_RETRY_MODE", "adaptive")
    aws_env.setenv("AWS_MAX_ATTEMPTS", "2")
    retries = aws.connect().sagemaker.meta.config.retries
    assert (retries["mode"], retries["total_max_attempts"]) == ("adaptive", 2)


def test_malformed_max_attempts_is_a_usage_error(aws_env):
    aws_env.setenv("AWS_MAX_ATTEMPTS", "lots")
    with pytest.raises(UsageError, match="must be a whole number"):
        aws.connect().client("sagemaker")


def test_region_comes_from_the_environment_and_the_flag_wins(aws_env):
    assert aws.connect().region == REGION
    assert aws.connect(region="eu-west-1").region == "eu-west-1"


def test_aws_region_is_honoured_and_wins_over_aws_default_region_like_the_aws_cli(aws_env):
    aws_env.setenv("AWS_REGION", "eu-west-1")
    assert aws.connect().region == "eu-west-1"
    assert aws.connect(region="us-west-2").region == "us-west-2"


def test_missing_region_is_a_usage_error(aws_env):
    aws_env.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(UsageError, match="no AWS region: pass --region or set AWS_REGION"):
        aws.connect()


@pytest.mark.parametrize(
    ("region", "message"),
    [("us-east-9", "unknown AWS region 'us-east-9'"), ("useast1", "not an AWS region name")],
)
def test_unknown_or_malformed_region_is_rejected_before_any_call(aws_env, region, message):
    with pytest.raises(UsageError, match=message):
        aws.connect(region=region)


def test_unknown_region_is_allowed_when_an_endpoint_url_redirects_the_clients(aws_env):
    aws_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    assert aws.connect(region="us-east-9").region == "us-east-9"


def test_upload_skips_keys_whose_content_hash_is_already_stored(bucket, calls):
    client = aws.connect()
    objects = {"code/a.py": b"print('a')\n", "code/b.txt": b"torch\n"}
    assert aws.upload_objects(client, bucket, objects) == (2, 0)
    assert aws.upload_objects(client, bucket, objects) == (0, 2)
    assert calls.count("PutObject") == 2
    head = client.s3.head_object(Bucket=bucket, Key="code/a.py")
    assert head["Metadata"]["sha256"] == aws.sha256_hex(b"print('a')\n")


def test_upload_replaces_a_key_whose_content_changed(bucket):
    client = aws.connect()
    aws.upload_objects(client, bucket, {"code/a.py": b"old"})
    assert aws.upload_objects(client, bucket, {"code/a.py": b"new"}) == (1, 0)
    body = client.s3.get_object(Bucket=bucket, Key="code/a.py")["Body"].read()
    assert body == b"new"


def test_upload_replaces_an_object_without_our_hash_metadata(bucket):
    client = aws.connect()
    client.s3.put_object(Bucket=bucket, Key="code/a.py", Body=b"same")
    assert aws.upload_objects(client, bucket, {"code/a.py": b"same"}) == (1, 0)


def test_missing_bucket_says_how_to_create_it(moto):
    with pytest.raises(
        UsageError, match=r"bucket 'nope-bucket' does not exist: create it \(aws s3 mb"
    ):
        aws.check_bucket(aws.connect(), "nope-bucket")


def test_bucket_in_another_region_is_rejected(moto):
    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket="far-away-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    with pytest.raises(UsageError, match="is in eu-west-1, not us-east-1"):
        aws.check_bucket(aws.connect(), "far-away-bucket")


def test_existing_bucket_in_our_region_passes(bucket):
    aws.check_bucket(aws.connect(), bucket)


def test_upsert_creates_then_updates_the_same_pipeline(moto):
    client = aws.connect()
    first, created = aws.upsert_pipeline(client, CONFIG, '{"v": 1}\n', description="d1")
    second, created_again = aws.upsert_pipeline(client, CONFIG, '{"v": 2}\n', description="d2")
    assert (created, created_again) == (True, False)
    assert first == second
    pipelines = client.sagemaker.list_pipelines()["PipelineSummaries"]
    assert [p["PipelineName"] for p in pipelines] == [CONFIG.pipeline_name]
    described = client.sagemaker.describe_pipeline(PipelineName=CONFIG.pipeline_name)
    assert described["PipelineDefinition"] == '{"v": 2}\n'
    assert described["PipelineDescription"] == "d2"
    assert described["RoleArn"] == ROLE


def test_upsert_tags_on_create_and_adds_tags_on_update(moto):
    client = aws.connect()
    arn, _ = aws.upsert_pipeline(client, CONFIG, "{}", description="d", tags=[("team", "cv")])
    aws.upsert_pipeline(client, CONFIG, "{}", description="d", tags=[("stage", "prod")])
    tags = {t["Key"]: t["Value"] for t in client.sagemaker.list_tags(ResourceArn=arn)["Tags"]}
    assert tags == {"team": "cv", "stage": "prod"}


def test_definition_over_100_kb_goes_through_s3(bucket, calls):
    client = aws.connect()
    definition = json.dumps({"Version": "2020-12-01", "Padding": "x" * 110_000})
    aws.upsert_pipeline(client, CONFIG, definition, description="big")
    (create,) = calls.called("CreatePipeline")
    assert "PipelineDefinition" not in create
    location = create["PipelineDefinitionS3Location"]
    assert location["Bucket"] == BUCKET
    stored = client.s3.get_object(Bucket=BUCKET, Key=location["ObjectKey"])["Body"].read()
    assert stored.decode() == definition


def test_definition_under_100_kb_is_sent_inline(moto, calls):
    aws.upsert_pipeline(aws.connect(), CONFIG, '{"small": true}', description="d")
    (create,) = calls.called("CreatePipeline")
    assert create["PipelineDefinition"] == '{"small": true}'
    assert len(create["ClientRequestToken"]) >= 32  # a retried create makes no second pipeline


def test_describe_pipeline_of_a_missing_pipeline_says_to_upsert(moto):
    with pytest.raises(UsageError, match="does not exist in us-east-1: create it with"):
        aws.describe_pipeline(aws.connect(), "no-such-pipeline")


def _script_statuses(calls, arn, statuses):
    """Each DescribePipelineExecution sees the next status (moto finishes executions at once)."""
    queue = list(statuses)

    def advance(params):
        moto_execution(arn).pipeline_execution_status = queue.pop(0) if queue else statuses[-1]

    calls.stubs["DescribePipelineExecution"] = advance


def test_wait_logs_each_step_change_and_returns_on_success(moto, calls, caplog):
    create_pipeline()
    client = aws.connect()
    arn = aws.start_execution(client, "dogbreed-pipeline", [])
    _script_statuses(calls, arn, ["Executing", "Executing", "Succeeded"])
    listings = iter(
        [
            steps_response(("Prepare", "Processing", "Executing")),
            steps_response(("Prepare", "Processing", "Succeeded"), ("Tune", "Tuning", "Executing")),
            steps_response(("Prepare", "Processing", "Succeeded"), ("Tune", "Tuning", "Succeeded")),
        ]
    )
    calls.stubs["ListPipelineExecutionSteps"] = lambda params: next(listings)(params)
    sleeps = []
    caplog.set_level("INFO", logger="pipeline")
    result = aws.wait_for_execution(client, arn, interval=7, sleep=sleeps.append)
    assert result["PipelineExecutionStatus"] == "Succeeded"
    assert sleeps == [7, 7]
    messages = [r.getMessage() for r in caplog.records if r.name == "pipeline.aws"]
    assert messages == [
        "step Prepare: Executing",
        "step Prepare: Succeeded",
        "step Tune: Executing",
        "step Tune: Succeeded",
        "execution Succeeded",
    ]


@pytest.mark.parametrize("final", ["Failed", "Stopped"])
def test_wait_raises_when_the_execution_fails_or_stops(moto, calls, final):
    create_pipeline()
    client = aws.connect()
    arn = aws.start_execution(client, "dogbreed-pipeline", [])
    _script_statuses(calls, arn, ["Executing", final])
    calls.stubs["ListPipelineExecutionSteps"] = steps_response(("Prepare", "Processing", final))
    with pytest.raises(ExecutionFailed, match=f"execution {final.lower()}"):
        aws.wait_for_execution(client, arn, interval=0, sleep=lambda s: None)


def test_wait_gives_up_after_the_timeout_and_says_the_execution_runs_on(moto, calls):
    create_pipeline()
    client = aws.connect()
    arn = aws.start_execution(client, "dogbreed-pipeline", [])
    _script_statuses(calls, arn, ["Executing"])
    calls.stubs["ListPipelineExecutionSteps"] = steps_response()
    clock = iter(range(0, 1000, 10))
    with pytest.raises(ExecutionFailed, match="still Executing after 25 s; it keeps running"):
        aws.wait_for_execution(
            client, arn, interval=10, timeout=25, sleep=lambda s: None, clock=lambda: next(clock)
        )


def test_wait_keeps_polling_when_steps_cannot_be_listed(moto, calls, caplog):
    create_pipeline()
    client = aws.connect()
    arn = aws.start_execution(client, "dogbreed-pipeline", [])
    calls.stubs["ListPipelineExecutionSteps"] = lambda params: aws_error(
        "AccessDeniedException", "not authorized to perform: sagemaker:ListPipelineExecutionSteps"
    )
    result = aws.wait_for_execution(client, arn, interval=0, sleep=lambda s: None)
    assert result["PipelineExecutionStatus"] == "Succeeded"
    assert "cannot list steps" in caplog.text


def test_schedule_is_created_then_updated_in_place(moto):
    pipeline_arn = create_pipeline()
    client = aws.connect()
    common = dict(
        name="nightly",
        group="default",
        timezone=None,
        pipeline_arn=pipeline_arn,
        role_arn=SCHEDULER_ROLE,
        parameters=[],
        description="d",
    )
    arn, created = aws.upsert_schedule(client, expression="rate(1 day)", **common)
    arn2, created2 = aws.upsert_schedule(client, expression="cron(0 3 * * ? *)", **common)
    assert (created, created2, arn) == (True, False, arn2)
    schedules = client.scheduler.list_schedules()["Schedules"]
    assert [s["Name"] for s in schedules] == ["nightly"]
    stored = client.scheduler.get_schedule(Name="nightly")
    assert stored["ScheduleExpression"] == "cron(0 3 * * ? *)"


def test_deleting_a_missing_schedule_reports_false(moto):
    assert aws.delete_schedule(aws.connect(), name="nothing", group="default") is False


# --------------------------------------------------------------------------- error mapping


def _client_error(code, message, operation="CreatePipeline"):
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def test_access_denied_names_the_action_from_the_message():
    error = from_botocore(
        _client_error(
            "AccessDeniedException",
            f"User: arn:aws:iam::{ACCOUNT}:user/alice is not authorized to perform: "
            "sagemaker:CreatePipeline on resource: arn:aws:sagemaker:us-east-1:1:pipeline/x",
        )
    )
    assert isinstance(error, UsageError)
    assert "may not call sagemaker:CreatePipeline" in str(error)
    assert "allows sagemaker:CreatePipeline" in str(error)


def test_access_denied_without_an_action_names_the_s3_permission():
    error = from_botocore(_client_error("403", "Forbidden", operation="HeadObject"))
    assert "may not call s3:GetObject (HeadObject)" in str(error)


def test_no_credentials_says_how_to_provide_them():
    error = from_botocore(NoCredentialsError())
    assert isinstance(error, UsageError)
    assert "no AWS credentials found: set AWS_PROFILE" in str(error)


def test_no_region_says_how_to_set_one():
    assert "pass --region or set AWS_REGION" in str(from_botocore(NoRegionError()))


def test_expired_credentials_are_a_usage_error():
    error = from_botocore(_client_error("ExpiredTokenException", "The security token expired"))
    assert isinstance(error, UsageError)
    assert "AWS rejected the credentials (ExpiredTokenException)" in str(error)


def test_throttling_after_retries_is_an_aws_error_not_a_usage_error():
    error = from_botocore(_client_error("ThrottlingException", "Rate exceeded"))
    assert isinstance(error, AwsError) and not isinstance(error, UsageError)


def test_messages_never_echo_access_keys_or_signatures():
    text = redact("key AKIAIOSFODNN7EXAMPLE Credential=AKIAX/2024 X-Amz-Security-Token=abc123")
    assert "AKIAIOSFODNN7EXAMPLE" not in text
    assert "abc123" not in text
    assert "AKIAX/2024" not in text


def test_non_botocore_exceptions_are_not_mapped():
    assert from_botocore(RuntimeError("bug")) is None


# --------------------------------------------------------------------------- AWS_ENDPOINT_URL


@pytest.fixture
def endpoint(moto_server, aws_env):
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(request).close()
    aws_env.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server


def test_clients_honour_aws_endpoint_url(endpoint):
    client = aws.connect()
    for service in (client.sagemaker, client.s3, client.sts, client.scheduler):
        assert service.meta.endpoint_url == endpoint
    aws.upsert_pipeline(client, CONFIG, '{"v": 1}', description="d")
    # A client of our own, aimed at the server explicitly, sees what pipeline.aws created.
    direct = boto3.client("sagemaker", region_name=REGION, endpoint_url=endpoint)
    names = [p["PipelineName"] for p in direct.list_pipelines()["PipelineSummaries"]]
    assert names == [CONFIG.pipeline_name]


# ------------------------------------------------------------- Debugger refusals

# The exact answer an account new to Debugger gets is undocumented: plausible phrasings.
DEBUGGER_REFUSALS = [
    "ClientError: SageMaker Debugger is no longer available to new customers",
    "ClientError: User is not authorized to use DebugRuleConfigurations",
    "ValidationException: ProfilerConfig is not supported for this account",
    "AccessDeniedException: access denied for SageMaker Debugger rule evaluation",
]
OTHER_FAILURES = [
    "ClientError: out of memory",
    "AlgorithmError: train.py exited with code 1: debugger hook saved 3 tensors",
    "ResourceLimitExceeded: The account-level service limit 'ml.g5.2xlarge for training job "
    "usage' is 0 Instances",
    None,
    "",
]


@pytest.mark.parametrize("reason", DEBUGGER_REFUSALS)
def test_a_debugger_refusal_gets_the_hint_to_run_the_rules_in_the_pipeline(reason):
    assert aws.debugger_hint(["ClientError: out of memory", reason]) == aws.DEBUGGER_HINT
    assert "--debugger pipeline" in aws.DEBUGGER_HINT


@pytest.mark.parametrize("reason", OTHER_FAILURES)
def test_other_failures_get_no_debugger_hint(reason):
    assert aws.debugger_hint([reason]) is None


def test_wait_adds_the_debugger_hint_when_train_model_was_refused(moto, calls):
    create_pipeline()
    client = aws.connect()
    arn = aws.start_execution(client, "dogbreed-pipeline", [])
    _script_statuses(calls, arn, ["Executing", "Failed"])
    refusal = DEBUGGER_REFUSALS[0]

    def listing(params):
        return ok(
            {
                "PipelineExecutionSteps": [
                    {"StepName": "TrainModel", "StepStatus": "Failed", "FailureReason": refusal}
                ]
            }
        )

    calls.stubs["ListPipelineExecutionSteps"] = listing
    with pytest.raises(ExecutionFailed, match="upsert with --debugger pipeline"):
        aws.wait_for_execution(client, arn, interval=0, sleep=lambda s: None)
