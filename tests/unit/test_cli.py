"""The dogbreed-pipeline command against moto: what users see on stdout, stderr and in AWS."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest
from helpers.awsfakes import (
    ACCOUNT,
    DEFAULT_BUCKET,
    REGION,
    ROLE,
    SCHEDULER_ROLE,
    aws_error,
    create_pipeline,
    moto_execution,
    ok,
    one_error_line,
    steps_response,
)
from helpers.paths import ROOT

from pipeline import cli
from pipeline.cli import argtypes, options
from pipeline.cli.main import COMMANDS
from pipeline.config import PipelineConfig

# aws_env, moto, calls: a clean AWS environment, moto, and a recorder of AWS calls.

CLI = os.path.join(os.path.dirname(sys.executable), "dogbreed-pipeline")
UPSERT = ["upsert", "--role-arn", ROLE]
# The configuration those flags give (bucket: the SageMaker default for moto's account).
UPSERT_CONFIG = PipelineConfig(role_arn=ROLE, bucket=DEFAULT_BUCKET, region=REGION)


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sagemaker():
    return boto3.client("sagemaker", region_name=REGION)


# --------------------------------------------------------------------------- help


def test_help_works_in_a_subprocess_and_lists_every_command():
    # Its speed is a benchmark figure (bench/), not an assertion: a busy CI machine would flake.
    result = subprocess.run([CLI, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


def _last_line_of(code: str) -> str:
    """What a fresh interpreter running `code` prints last (nothing imported beforehand)."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("argv", [["--help"]] + [[name, "--help"] for name in COMMANDS])
def test_help_imports_neither_boto3_nor_the_sdk_nor_torch(argv):
    code = (
        "import sys\nfrom pipeline import cli\n"
        f"assert cli.main({argv!r}) == 0\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'sagemaker', 'torch', 'waitress') "
        "if m in sys.modules))"
    )
    assert _last_line_of(code) == "[]"


def test_top_level_help_imports_no_command_module():
    code = (
        "import sys\nfrom pipeline import cli\n"
        "assert cli.main(['--help']) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith('pipeline.cli.') and "
        "m not in ('pipeline.cli.main', 'pipeline.cli.options', 'pipeline.cli.argtypes')))"
    )
    assert _last_line_of(code) == "[]"


def test_library_code_does_not_load_the_cli():
    code = (
        "import sys\nimport pipeline.local.runner, pipeline.local.pictures, pipeline.definition\n"
        "print('pipeline.cli' in sys.modules)"
    )
    assert _last_line_of(code) == "False"


def test_no_command_prints_usage_and_exits_2(capsys):
    code, out, err = run(capsys)
    assert code == 2
    assert "usage: dogbreed-pipeline" in err


# --------------------------------------------------------------------------- export


def test_export_writes_definition_json_and_creates_no_aws_client(
    aws_env, definitions, monkeypatch, tmp_path, capsys
):
    from pipeline import aws

    monkeypatch.setattr(aws, "connect", lambda *a, **k: pytest.fail("export called AWS"))
    out = tmp_path / "definition.json"
    code, stdout, err = run(
        capsys,
        "export",
        "--out",
        str(out),
        "--role-arn",
        ROLE,
        "--bucket",
        DEFAULT_BUCKET,
        "--region",
        REGION,
    )
    assert code == 0, err
    assert stdout == ""
    assert out.read_text() == definitions(UPSERT_CONFIG)


def test_export_without_out_writes_to_stdout(aws_env, definitions, capsys):
    code, stdout, err = run(capsys, "export", "--role-arn", ROLE, "--bucket", DEFAULT_BUCKET)
    assert code == 0, err
    assert stdout == definitions(UPSERT_CONFIG)


def test_spot_flag_reaches_the_config_of_export_and_upsert():
    assert options.config_from(cli.build_parser().parse_args(["export", "--spot"])).use_spot
    args = cli.build_parser().parse_args(["upsert", "--role-arn", ROLE, "--spot"])
    assert options.config_from(args).use_spot is True
    assert options.config_from(cli.build_parser().parse_args(["export"])).use_spot is False


def test_no_debugger_flag_reaches_the_config():
    # An alias of `--debugger off` (tests/unit/test_debugger_modes.py has the modes).
    args = cli.build_parser().parse_args(["upsert", "--role-arn", ROLE, "--no-debugger"])
    assert options.config_from(args).debugger == "off"
    args = cli.build_parser().parse_args(["export"])
    assert options.config_from(args).debugger == "service"


def test_graph_renders_the_exported_definition(aws_env, definitions, tmp_path, capsys):
    from pipeline.graph import mermaid

    out = tmp_path / "graph.mmd"
    code, _, err = run(
        capsys, "graph", "--out", str(out), "--role-arn", ROLE, "--bucket", DEFAULT_BUCKET
    )
    assert code == 0, err
    assert out.read_text() == mermaid(json.loads(definitions(UPSERT_CONFIG)))


# --------------------------------------------------------------------------- upsert


def test_upsert_twice_leaves_one_pipeline_whose_definition_equals_export(
    default_bucket, definitions, calls, capsys, tmp_path
):
    code, first_out, first_err = run(capsys, *UPSERT)
    assert code == 0, first_err
    puts_after_first = calls.count("PutObject")
    code, second_out, second_err = run(capsys, *UPSERT)
    assert code == 0, second_err

    pipelines = sagemaker().list_pipelines()["PipelineSummaries"]
    assert [p["PipelineName"] for p in pipelines] == ["dogbreed-pipeline"]
    arn = pipelines[0]["PipelineArn"]
    assert first_out == second_out == f"{arn}\n"

    exported = tmp_path / "exported.json"
    assert (
        run(
            capsys,
            "export",
            "--out",
            str(exported),
            "--role-arn",
            ROLE,
            "--bucket",
            DEFAULT_BUCKET,
            "--region",
            REGION,
        )[0]
        == 0
    )
    stored = sagemaker().describe_pipeline(PipelineName="dogbreed-pipeline")
    assert stored["PipelineDefinition"] == exported.read_text()
    assert stored["RoleArn"] == ROLE

    # The bundle went up once: the second run found every object with the same hash.
    assert puts_after_first > 0
    assert calls.count("PutObject") == puts_after_first
    assert f"{puts_after_first} uploaded, 0 already there" in first_err
    assert f"0 uploaded, {puts_after_first} already there" in second_err
    assert calls.count("CreatePipeline") == 2 and calls.count("UpdatePipeline") == 1


def test_upsert_uploads_every_bundle_object_with_its_hash(default_bucket, definitions, capsys):
    from pipeline.bundle import Bundle

    assert run(capsys, *UPSERT)[0] == 0
    s3 = boto3.client("s3", region_name=REGION)
    for key, data in Bundle.from_dir().objects(UPSERT_CONFIG).items():
        stored = s3.get_object(Bucket=DEFAULT_BUCKET, Key=key)
        assert stored["Body"].read() == data
        assert stored["Metadata"]["sha256"] == __import__("hashlib").sha256(data).hexdigest()


def test_upsert_default_bucket_is_checked_against_the_callers_account(
    default_bucket, definitions, calls, capsys
):
    assert run(capsys, *UPSERT)[0] == 0
    assert calls.count("GetCallerIdentity") == 1
    (head,) = calls.called("HeadBucket")
    assert head == {"Bucket": DEFAULT_BUCKET, "ExpectedBucketOwner": ACCOUNT}


def test_upsert_tags_the_pipeline_and_adds_new_tags_on_update(default_bucket, definitions, capsys):
    assert run(capsys, *UPSERT, "--tag", "team=vision", "--tag", "cost-centre=42")[0] == 0
    assert run(capsys, *UPSERT, "--tag", "stage=prod")[0] == 0
    arn = sagemaker().describe_pipeline(PipelineName="dogbreed-pipeline")["PipelineArn"]
    tags = {t["Key"]: t["Value"] for t in sagemaker().list_tags(ResourceArn=arn)["Tags"]}
    assert tags == {"team": "vision", "cost-centre": "42", "stage": "prod"}


def test_upsert_with_a_missing_bucket_fails_before_building_anything(moto, calls, capsys):
    code, out, err = run(capsys, *UPSERT, "--bucket", "no-such-bucket-here")
    assert code == 2
    line = one_error_line(err)
    assert "bucket 'no-such-bucket-here' does not exist: create it" in line
    assert "PutObject" not in calls.ops and "CreatePipeline" not in calls.ops


def test_upsert_access_denied_names_the_missing_permission(
    default_bucket, definitions, calls, capsys
):
    calls.stubs["CreatePipeline"] = lambda params: aws_error(
        "AccessDeniedException",
        f"User: arn:aws:iam::{ACCOUNT}:user/ci is not authorized to perform: "
        f"sagemaker:CreatePipeline on resource: arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/x "
        "because no identity-based policy allows the sagemaker:CreatePipeline action",
    )
    code, out, err = run(capsys, *UPSERT)
    assert code == 2
    assert "access denied: your AWS identity may not call sagemaker:CreatePipeline" in (
        one_error_line(err)
    )


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["upsert"], "the following arguments are required: --role-arn"),
        (["upsert", "--role-arn", "MyRole"], "'MyRole' is not an IAM role ARN"),
        (["upsert", "--role-arn", "arn:aws:iam::123:role/x"], "is not an IAM role ARN"),
        (["upsert", "--role-arn", ROLE, "--tag", "team"], "'team' is not Name=Value"),
        (["upsert", "--role-arn", ROLE, "--tag", "aws:x=1"], "the aws: prefix is reserved"),
        (["upsert", "--role-arn", ROLE, "--bucket", "Bad_Bucket"], "not a valid S3 bucket name"),
        (["upsert", "--role-arn", ROLE, "--region", "us-east-9"], "unknown AWS region 'us-east-9'"),
        (["upsert", "--role-arn", ROLE, "--region", "mars"], "'mars' is not an AWS region name"),
        (["start", "--param", "Epochs"], "'Epochs' is not Name=Value"),
        (["start", "--param", "=3"], "'=3' is not Name=Value"),
        (["start", "--wait", "--poll-interval", "-1"], "is not a number of seconds"),
        (["status", "not-an-arn"], "'not-an-arn' is not a pipeline execution ARN"),
        (["schedule", "--cron", "cron(0 3 * * ? *)"], "required: --role-arn"),
        (["schedule", "--cron", "0 3 * * ? *", "--role-arn", "nope"], "not an IAM role ARN"),
        (
            [
                "schedule",
                "--cron",
                "cron(0 3 * * ? *)",
                "--role-arn",
                SCHEDULER_ROLE,
                "--timezone",
                "Mars/Olympus",
            ],
            "is not an IANA time zone",
        ),
        (["unschedule", "--name", "bad name!"], "schedule names are 1-64"),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_exit_2_and_no_aws_call(
    moto, calls, capsys, argv, message
):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in one_error_line(err)
    assert out == ""
    assert calls.ops == []


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 3 * * *", "did you mean 'cron(0 3 * * ? *)'"),
        ("cron(0 3 * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 3 ? * ? *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("every day", "EventBridge cron has 6 fields"),
        ("rate(1 days)", "EventBridge wants 'rate(1 day)'"),
        ("rate(5 minute)", "EventBridge wants 'rate(5 minutes)'"),
        ("rate(0 hours)", "rate takes a positive whole number"),
        ("rate(2 weeks)", "rate takes a positive whole number"),
    ],
)
def test_bad_schedule_expression_is_rejected_locally(moto, calls, capsys, expression, message):
    code, out, err = run(capsys, "schedule", "--cron", expression, "--role-arn", SCHEDULER_ROLE)
    assert code == 2
    assert message in one_error_line(err)
    assert calls.ops == []


@pytest.mark.parametrize(
    ("expression", "normalised"),
    [
        ("0 3 * * ? *", "cron(0 3 * * ? *)"),
        ("cron(0 3 * * ? *)", "cron(0 3 * * ? *)"),
        ("cron(0/15 8-17 ? * MON-FRI *)", "cron(0/15 8-17 ? * MON-FRI *)"),
        ("cron(0 10 L * ? 2025-2030)", "cron(0 10 L * ? 2025-2030)"),
        ("cron(0 10 15W JAN,JUL ? *)", "cron(0 10 15W JAN,JUL ? *)"),
        ("cron(0 10 ? * 6L *)", "cron(0 10 ? * 6L *)"),
        ("cron(0 10 ? * MON#2 *)", "cron(0 10 ? * MON#2 *)"),
        ("rate(1 day)", "rate(1 day)"),
        ("rate( 12  hours )", "rate(12 hours)"),
    ],
)
def test_valid_schedule_expressions_are_accepted_and_normalised(expression, normalised):
    assert argtypes.schedule_expression(expression) == normalised


def test_no_credentials_is_one_line_that_says_how_to_provide_them(aws_env, capsys):
    aws_env.delenv("AWS_ACCESS_KEY_ID")
    aws_env.delenv("AWS_SECRET_ACCESS_KEY")
    code, out, err = run(capsys, "status")
    assert code == 2
    assert "no AWS credentials found: set AWS_PROFILE" in one_error_line(err)


def test_unknown_profile_is_one_line(aws_env, capsys):
    code, out, err = run(capsys, "status", "--profile", "nobody")
    assert code == 2
    assert "profile (nobody) could not be found: check AWS_PROFILE / --profile" in (
        one_error_line(err)
    )


def test_unreachable_endpoint_is_one_line_naming_it(aws_env, capsys):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    aws_env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    aws_env.setenv("AWS_MAX_ATTEMPTS", "1")
    code, out, err = run(capsys, "status")
    assert code == 2
    assert f"cannot reach http://127.0.0.1:{port}" in one_error_line(err)


def test_missing_region_is_one_line(aws_env, capsys):
    aws_env.delenv("AWS_DEFAULT_REGION")
    code, out, err = run(capsys, "start")
    assert code == 2
    assert "no AWS region: pass --region or set AWS_REGION" in one_error_line(err)


# --------------------------------------------------------------------------- start


@pytest.fixture
def deployed(moto):
    return create_pipeline()


def test_start_prints_the_execution_arn_and_sends_normalised_parameters(deployed, calls, capsys):
    code, out, err = run(
        capsys,
        "start",
        "--param",
        "Epochs=+7",
        "--param",
        "Pretrained=FALSE",
        "--param",
        "AccuracyThreshold=0.85",
        "--param",
        "ModelApprovalStatus=PendingManualApproval",
        "--param",
        "InstanceType=ml.g5.2xlarge",
        "--display-name",
        "nightly-1",
    )
    assert code == 0, err
    arn = out.strip()
    executions = sagemaker().list_pipeline_executions(PipelineName="dogbreed-pipeline")
    assert [e["PipelineExecutionArn"] for e in executions["PipelineExecutionSummaries"]] == [arn]
    sent = sagemaker().list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)
    assert {p["Name"]: p["Value"] for p in sent["PipelineParameters"]} == {
        "Epochs": "7",
        "Pretrained": "false",
        "AccuracyThreshold": "0.85",
        "ModelApprovalStatus": "PendingManualApproval",
        "InstanceType": "ml.g5.2xlarge",
    }
    (start,) = calls.called("StartPipelineExecution")
    assert start["PipelineExecutionDisplayName"] == "nightly-1"


def test_start_without_params_uses_the_defaults(deployed, capsys):
    code, out, err = run(capsys, "start")
    assert code == 0, err
    assert out.startswith("arn:aws:sagemaker:us-east-1:123456789012:pipeline/dogbreed-pipeline/")


def test_start_with_an_unknown_parameter_lists_the_valid_ones_and_starts_nothing(
    deployed, calls, capsys
):
    code, out, err = run(capsys, "start", "--param", "Epoch=3")
    assert code == 2
    line = one_error_line(err)
    assert "unknown parameter 'Epoch'" in line
    assert "did you mean Epochs?" in line
    assert "valid: AccuracyThreshold, Epochs, InstanceType, ModelApprovalStatus, Pretrained" in line
    assert calls.ops == ["DescribePipeline"]


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("Epochs=1.5", "--param Epochs expects an Integer, got '1.5'"),
        ("Epochs=ten", "--param Epochs expects an Integer, got 'ten'"),
        ("AccuracyThreshold=high", "--param AccuracyThreshold expects a Float, got 'high'"),
        ("AccuracyThreshold=nan", "expects a Float"),
        ("Pretrained=yes", "--param Pretrained expects a Boolean (true or false), got 'yes'"),
        ("ModelApprovalStatus=Rejected", "must be one of Approved, PendingManualApproval"),
    ],
)
def test_start_with_an_ill_typed_parameter_starts_nothing(deployed, calls, capsys, param, message):
    code, out, err = run(capsys, "start", "--param", param)
    assert code == 2
    assert message in one_error_line(err)
    assert "StartPipelineExecution" not in calls.ops
    assert (
        sagemaker().list_pipeline_executions(PipelineName="dogbreed-pipeline")[
            "PipelineExecutionSummaries"
        ]
        == []
    )


def test_start_with_a_parameter_given_twice_is_rejected(deployed, calls, capsys):
    code, out, err = run(capsys, "start", "--param", "Epochs=3", "--param", "Epochs=4")
    assert code == 2
    assert "--param Epochs is given twice" in one_error_line(err)
    assert "StartPipelineExecution" not in calls.ops


def test_start_of_a_missing_pipeline_says_to_upsert(moto, capsys):
    code, out, err = run(capsys, "start", "--pipeline-name", "ghost")
    assert code == 2
    assert "pipeline 'ghost' does not exist in us-east-1: create it with" in one_error_line(err)


def _script(calls, statuses):
    """moto finishes executions at once: each DescribePipelineExecution sees the next status."""
    queue = list(statuses)

    def advance(params):
        moto_execution(params["PipelineExecutionArn"]).pipeline_execution_status = (
            queue.pop(0) if queue else statuses[-1]
        )

    calls.stubs["DescribePipelineExecution"] = advance


def test_start_wait_shows_progress_and_exits_0_on_success(deployed, calls, capsys):
    _script(calls, ["Executing", "Succeeded"])
    calls.stubs["ListPipelineExecutionSteps"] = steps_response(
        ("Prepare", "Processing", "Succeeded")
    )
    code, out, err = run(capsys, "start", "--wait", "--poll-interval", "0")
    assert code == 0, err
    assert out.startswith("arn:aws:sagemaker:") and out.count("\n") == 1
    assert "step Prepare: Succeeded" in err
    assert "execution Succeeded" in err


@pytest.mark.parametrize("final", ["Failed", "Stopped"])
def test_start_wait_exits_1_when_the_execution_fails_or_stops(deployed, calls, capsys, final):
    _script(calls, ["Executing", final])
    calls.stubs["ListPipelineExecutionSteps"] = steps_response(("Prepare", "Processing", final))
    code, out, err = run(capsys, "start", "--wait", "--poll-interval", "0")
    assert code == 1
    assert f"execution {final.lower()}" in one_error_line(err)
    assert out.startswith("arn:aws:sagemaker:")


def test_start_wait_timeout_exits_1_and_leaves_the_execution_running(deployed, calls, capsys):
    _script(calls, ["Executing"])
    calls.stubs["ListPipelineExecutionSteps"] = steps_response()
    code, out, err = run(capsys, "start", "--wait", "--poll-interval", "0", "--timeout", "0")
    assert code == 1
    assert "still Executing after 0 s; it keeps running" in one_error_line(err)


def test_interrupting_start_wait_says_the_execution_keeps_running(deployed, calls, capsys):
    def interrupt(params):
        raise KeyboardInterrupt

    calls.stubs["DescribePipelineExecution"] = interrupt
    code, out, err = run(capsys, "start", "--wait")
    assert code == 130
    arn = out.strip()
    assert f"stopped waiting; the execution keeps running: dogbreed-pipeline status {arn}" in err


# --------------------------------------------------------------------------- status


def test_status_shows_the_latest_execution_with_a_table_of_steps(deployed, calls, capsys):
    run(capsys, "start")
    latest = run(capsys, "start", "--display-name", "second")[1].strip()
    calls.stubs["ListPipelineExecutionSteps"] = steps_response(
        ("PrepareData", "Processing", "Succeeded"),
        ("TuneHyperparameters", "Tuning", "Failed"),
    )
    code, out, err = run(capsys, "status")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"Execution  {latest}"
    assert "Name       second" in lines
    assert "Status     Succeeded" in lines
    table = lines[lines.index("") + 1 :]
    assert table[0].split() == ["STEP", "TYPE", "STATUS", "STARTED", "ENDED", "REASON"]
    assert table[1].split()[:3] == ["PrepareData", "Processing", "Succeeded"]
    assert table[2].split()[:3] == ["TuneHyperparameters", "Tuning", "Failed"]
    assert table[2].endswith("ClientError: out of memory")
    # Columns line up: every row starts its STATUS cell at the same offset.
    assert len({row.index(row.split()[2]) for row in table}) == 1


def test_status_of_a_given_execution_arn(deployed, calls, capsys):
    calls.stubs["ListPipelineExecutionSteps"] = steps_response()
    first = run(capsys, "start", "--display-name", "first")[1].strip()
    run(capsys, "start", "--display-name", "second")
    code, out, err = run(capsys, "status", first)
    assert code == 0, err
    assert out.splitlines()[0] == f"Execution  {first}"
    assert "Name       first" in out


def test_status_without_executions_says_how_to_start_one(deployed, capsys):
    code, out, err = run(capsys, "status")
    assert code == 2
    assert "has no executions yet: start one with" in one_error_line(err)


# --------------------------------------------------------------------------- quotas


def _quota(name: str, value: float, code: str) -> dict:
    return {"QuotaName": name, "Value": value, "QuotaCode": code, "ServiceCode": "sagemaker"}


def _quotas(calls, applied: list[dict]) -> None:
    """Service Quotas as SageMaker's look (moto has none): AWS's defaults, then the account's."""
    defaults = [
        _quota("ml.g5.2xlarge for training job usage", 0, "L-G5TRAIN"),
        _quota("ml.c5.2xlarge for processing job usage", 4, "L-C5PROC"),
        _quota("ml.m5.xlarge for processing job usage", 4, "L-M5PROC"),
        _quota("ml.m5.xlarge for endpoint usage", 2, "L-M5ENDP"),
    ]
    calls.stubs["ListAWSDefaultServiceQuotas"] = lambda params: ok({"Quotas": defaults})
    calls.stubs["ListServiceQuotas"] = lambda params: ok({"Quotas": applied})


@pytest.fixture
def real_pipeline(moto):
    """The committed definition, deployed: its instance-type parameters drive the check."""
    return create_pipeline(definition=json.loads((ROOT / "pipeline_definition.json").read_text()))


def test_start_stops_before_anything_runs_when_a_quota_is_too_small(real_pipeline, calls, capsys):
    _quotas(calls, applied=[])
    code, out, err = run(capsys, "start")
    line = one_error_line(err)
    assert code == 2
    assert "the SageMaker quota 'ml.g5.2xlarge for training job usage' is 0 in us-east-1" in line
    assert "needs 2 (MaxParallelTuningJobs)" in line
    assert "--quota-code L-G5TRAIN --desired-value 2" in line and "--skip-quota-check" in line
    assert calls.count("StartPipelineExecution") == 0 and out == ""


def test_start_goes_ahead_when_the_accounts_quotas_suffice(real_pipeline, calls, capsys):
    _quotas(calls, applied=[_quota("ml.g5.2xlarge for training job usage", 2, "L-G5TRAIN")])
    code, out, err = run(capsys, "start")
    assert code == 0, err
    assert out.startswith("arn:aws:sagemaker:")


def test_start_checks_the_instance_types_and_counts_it_is_given(real_pipeline, calls, capsys):
    _quotas(calls, applied=[_quota("ml.g5.2xlarge for training job usage", 2, "L-G5TRAIN")])
    # (Not TrainingInstanceCount: the service-mode definition refuses more than one instance
    # before quotas are read; tests/unit/test_debugger_modes.py.)
    code, out, err = run(capsys, "start", "--param", "MaxParallelTuningJobs=3")
    assert code == 2
    assert "needs 3 (MaxParallelTuningJobs)" in one_error_line(err)
    code, out, err = run(capsys, "start", "--param", "EndpointInstanceType=ml.c5.large")
    assert code == 0, err
    assert "no SageMaker quota named 'ml.c5.large for endpoint usage'" in err


def test_skip_quota_check_starts_without_asking_service_quotas(real_pipeline, calls, capsys):
    _quotas(calls, applied=[])
    code, out, err = run(capsys, "start", "--skip-quota-check")
    assert code == 0, err
    assert calls.count("ListAWSDefaultServiceQuotas") == calls.count("ListServiceQuotas") == 0


def test_quotas_that_cannot_be_read_warn_and_do_not_block(real_pipeline, calls, capsys):
    calls.stubs["ListAWSDefaultServiceQuotas"] = lambda params: aws_error(
        "AccessDeniedException",
        "not authorized to perform: servicequotas:ListAWSDefaultServiceQuotas",
    )
    code, out, err = run(capsys, "start")
    assert code == 0, err
    assert "could not read the SageMaker quotas" in err and "starting without the check" in err


# --------------------------------------------------------------------------- stop, retry


def _execution_in(deployed: str, status: str) -> str:
    arn = boto3.client("sagemaker", region_name=REGION).start_pipeline_execution(
        PipelineName="dogbreed-pipeline", ClientRequestToken="t" * 32
    )["PipelineExecutionArn"]
    moto_execution(arn).pipeline_execution_status = status
    return arn


def test_stop_asks_sagemaker_to_stop_the_latest_executing_execution(deployed, calls, capsys):
    arn = _execution_in(deployed, "Executing")
    # moto lacks StopPipelineExecution: answer as SageMaker does.
    calls.stubs["StopPipelineExecution"] = lambda params: ok({"PipelineExecutionArn": arn})
    code, out, err = run(capsys, "stop")
    assert code == 0, err
    assert out == f"{arn}\n"
    (request,) = calls.called("StopPipelineExecution")
    assert request["PipelineExecutionArn"] == arn and len(request["ClientRequestToken"]) >= 32


@pytest.mark.parametrize("status", ["Succeeded", "Failed", "Stopped"])
def test_stop_of_a_finished_execution_is_one_line_and_changes_nothing(
    deployed, calls, capsys, status
):
    arn = _execution_in(deployed, status)
    code, out, err = run(capsys, "stop", arn)
    assert code == 2
    assert f"already ended {status}: there is nothing to stop" in one_error_line(err)
    assert calls.count("StopPipelineExecution") == 0 and out == ""


def test_stop_of_a_stopping_execution_makes_no_second_request(deployed, calls, capsys):
    arn = _execution_in(deployed, "Stopping")
    code, out, err = run(capsys, "stop", arn)
    assert code == 0, err
    assert "already stopping" in err
    assert calls.count("StopPipelineExecution") == 0


def test_retry_runs_a_failed_execution_again_and_waits_for_it(deployed, calls, capsys):
    arn = _execution_in(deployed, "Failed")
    calls.stubs["ListPipelineExecutionSteps"] = steps_response(("Train", "Training", "Succeeded"))

    def retried(params):
        moto_execution(params["PipelineExecutionArn"]).pipeline_execution_status = "Succeeded"
        return ok({"PipelineExecutionArn": params["PipelineExecutionArn"]})

    calls.stubs["RetryPipelineExecution"] = retried
    code, out, err = run(capsys, "retry", arn, "--wait", "--poll-interval", "0")
    assert code == 0, err
    assert out == f"{arn}\n"
    assert "execution Succeeded" in err
    assert calls.count("RetryPipelineExecution") == 1


@pytest.mark.parametrize("status", ["Executing", "Succeeded", "Stopped"])
def test_retry_of_an_execution_that_did_not_fail_is_refused(deployed, calls, capsys, status):
    arn = _execution_in(deployed, status)
    code, out, err = run(capsys, "retry", arn)
    assert code == 2
    assert f"is {status}: only a Failed execution can be retried" in one_error_line(err)
    assert calls.count("RetryPipelineExecution") == 0


def test_retry_rejected_by_sagemaker_is_one_line(deployed, calls, capsys):
    arn = _execution_in(deployed, "Failed")
    calls.stubs["RetryPipelineExecution"] = lambda params: aws_error(
        "ConflictException", "Pipeline definition changed since the execution started."
    )
    code, out, err = run(capsys, "retry", arn)
    assert code == 2
    assert "Pipeline definition changed since the execution started" in one_error_line(err)


# --------------------------------------------------------------------------- teardown


def _deployed_endpoint(name: str, config: str, models: list[str]) -> None:
    """What the deploy steps leave: models, a configuration serving them, the endpoint."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    for model in models:
        sagemaker.create_model(
            ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "image"}
        )
    sagemaker.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": f"v{index}",
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
            }
            for index, model in enumerate(models)
        ],
    )
    if name:
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)


def _names(kind: str) -> list[str]:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    if kind == "endpoints":
        return [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]
    if kind == "configs":
        return [
            c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]
        ]
    return [m["ModelName"] for m in sagemaker.list_models()["Models"]]


def test_teardown_deletes_the_endpoint_its_configurations_and_models_then_finds_nothing(
    moto, capsys
):
    # An older execution's configuration, the one being served, and someone else's.
    _deployed_endpoint("", "dogbreed-classifier-0a1b2c3d4e5f", ["model-old"])
    _deployed_endpoint("dogbreed-classifier", "dogbreed-classifier-9z8y7x6w5v4u", ["model-new"])
    _deployed_endpoint("", "unrelated-config", ["unrelated-model"])
    code, out, err = run(capsys, "teardown", "--yes")
    assert code == 0, err
    assert _names("endpoints") == []
    assert _names("configs") == ["unrelated-config"]
    assert _names("models") == ["unrelated-model"]
    assert "deleted endpoint dogbreed-classifier" in err

    code, out, err = run(capsys, "teardown", "--yes")
    assert code == 0, err
    assert "nothing to delete: no endpoint dogbreed-classifier" in err


def test_teardown_refuses_an_endpoint_the_pipeline_did_not_deploy(moto, capsys):
    _deployed_endpoint("dogbreed-classifier", "hand-made-config", ["hand-made-model"])
    code, out, err = run(capsys, "teardown", "--yes")
    assert code == 2
    assert "serves configuration 'hand-made-config', which this pipeline did not create" in (
        one_error_line(err)
    )
    assert _names("endpoints") == ["dogbreed-classifier"]
    assert _names("models") == ["hand-made-model"]


def test_teardown_asks_first_and_deletes_nothing_unless_confirmed(moto, capsys, monkeypatch):
    _deployed_endpoint("dogbreed-classifier", "dogbreed-classifier-0a1b2c3d4e5f", ["model"])
    # No terminal to ask on: one line, exit 2.
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, out, err = run(capsys, "teardown")
    assert code == 2
    assert "pass --yes" in one_error_line(err)
    # Asked, and answered no.
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    code, out, err = run(capsys, "teardown")
    assert code == 1
    assert "not confirmed: nothing deleted" in err
    assert _names("endpoints") == ["dogbreed-classifier"] and _names("models") == ["model"]


def test_teardown_with_schedule_also_deletes_the_schedule(deployed, capsys):
    code, _, err = run(
        capsys, "schedule", "--cron", "cron(0 3 * * ? *)", "--role-arn", SCHEDULER_ROLE
    )
    assert code == 0, err
    code, out, err = run(capsys, "teardown", "--yes", "--schedule")
    assert code == 0, err
    assert "deleted schedule dogbreed-pipeline-schedule" in err
    schedules = boto3.client("scheduler", region_name=REGION).list_schedules()["Schedules"]
    assert schedules == []


# --------------------------------------------------------------------------- schedule


def test_schedule_targets_the_pipeline_with_its_defaults_and_the_scheduler_role(deployed, capsys):
    code, out, err = run(
        capsys,
        "schedule",
        "--cron",
        "0 3 ? * MON-FRI *",
        "--role-arn",
        SCHEDULER_ROLE,
        "--timezone",
        "Europe/Paris",
    )
    assert code == 0, err
    schedule = boto3.client("scheduler", region_name=REGION).get_schedule(
        Name="dogbreed-pipeline-schedule"
    )
    assert out.strip() == schedule["Arn"]
    assert schedule["ScheduleExpression"] == "cron(0 3 ? * MON-FRI *)"
    assert schedule["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert schedule["State"] == "ENABLED"
    target = schedule["Target"]
    assert target["Arn"] == deployed
    assert target["RoleArn"] == SCHEDULER_ROLE
    assert target["SageMakerPipelineParameters"] == {}  # every parameter takes its default


def test_a_cron_field_out_of_range_is_judged_by_scheduler_and_reported_in_one_line(
    deployed, calls, capsys
):
    # Only the classic mistakes are caught locally; the fields themselves are Scheduler's.
    calls.stubs["CreateSchedule"] = lambda params: aws_error(
        "ValidationException", "Invalid Schedule Expression cron(61 3 * * ? *)."
    )
    code, out, err = run(
        capsys, "schedule", "--cron", "cron(61 3 * * ? *)", "--role-arn", SCHEDULER_ROLE
    )
    assert code == 2
    assert "Invalid Schedule Expression cron(61 3 * * ? *)" in one_error_line(err)
    assert calls.params[calls.ops.index("CreateSchedule")]["ScheduleExpression"] == (
        "cron(61 3 * * ? *)"
    )
    assert out == ""


def test_schedule_with_params_passes_them_and_rerunning_updates_it(deployed, capsys):
    assert (
        run(
            capsys,
            "schedule",
            "--cron",
            "rate(1 day)",
            "--role-arn",
            SCHEDULER_ROLE,
            "--name",
            "nightly",
        )[0]
        == 0
    )
    code, out, err = run(
        capsys,
        "schedule",
        "--cron",
        "rate(7 days)",
        "--role-arn",
        SCHEDULER_ROLE,
        "--name",
        "nightly",
        "--param",
        "Epochs=2",
    )
    assert code == 0, err
    scheduler = boto3.client("scheduler", region_name=REGION)
    assert [s["Name"] for s in scheduler.list_schedules()["Schedules"]] == ["nightly"]
    schedule = scheduler.get_schedule(Name="nightly")
    assert schedule["ScheduleExpression"] == "rate(7 days)"
    assert schedule["Target"]["SageMakerPipelineParameters"] == {
        "PipelineParameterList": [{"Name": "Epochs", "Value": "2"}]
    }


def test_schedule_checks_params_against_the_pipeline(deployed, capsys):
    code, out, err = run(
        capsys,
        "schedule",
        "--cron",
        "rate(1 day)",
        "--role-arn",
        SCHEDULER_ROLE,
        "--param",
        "Epochs=many",
    )
    assert code == 2
    assert "--param Epochs expects an Integer" in one_error_line(err)


def test_schedule_refuses_a_pipeline_with_a_parameter_without_default(moto, capsys):
    create_pipeline(
        definition={
            "Version": "2020-12-01",
            "Steps": [],
            "Parameters": [{"Name": "InputDataUrl", "Type": "String"}],
        }
    )
    code, out, err = run(capsys, "schedule", "--cron", "rate(1 day)", "--role-arn", SCHEDULER_ROLE)
    assert code == 2
    assert "InputDataUrl have none: give them with --param" in one_error_line(err)
    assert boto3.client("scheduler", region_name=REGION).list_schedules()["Schedules"] == []


def test_unschedule_deletes_the_schedule_then_says_there_is_none(deployed, capsys):
    run(capsys, "schedule", "--cron", "rate(1 day)", "--role-arn", SCHEDULER_ROLE)
    code, out, err = run(capsys, "unschedule")
    assert code == 0, err
    assert "deleted schedule dogbreed-pipeline-schedule" in err
    assert boto3.client("scheduler", region_name=REGION).list_schedules()["Schedules"] == []
    code, out, err = run(capsys, "unschedule")
    assert code == 0
    assert "no schedule 'dogbreed-pipeline-schedule' in group 'default'" in err
    assert "nothing to remove" in err


def test_status_ends_with_the_debugger_hint_when_a_step_was_refused_debugger(
    deployed, calls, capsys
):
    from helpers.awsfakes import ok

    run(capsys, "start")
    refusal = "ClientError: SageMaker Debugger is not available to new customers"
    calls.stubs["ListPipelineExecutionSteps"] = lambda params: ok(
        {
            "PipelineExecutionSteps": [
                {"StepName": "TrainModel", "StepType": "Training", "StepStatus": "Failed",
                 "FailureReason": refusal}
            ]
        }
    )  # fmt: skip
    code, out, err = run(capsys, "status")
    assert code == 0, err
    assert out.rstrip().splitlines()[-1].startswith("Hint: SageMaker Debugger looks unavailable")
    assert "--debugger pipeline" in out


def test_status_gives_no_hint_for_other_failures(deployed, calls, capsys):
    run(capsys, "start")
    calls.stubs["ListPipelineExecutionSteps"] = steps_response(("TrainModel", "Training", "Failed"))
    code, out, err = run(capsys, "status")
    assert code == 0, err
    assert "Hint:" not in out


def test_serve_local_with_a_ray_python_that_is_not_there_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "serve-local", "--model-data", str(tmp_path),
                       "--ray-python", str(tmp_path / "no-python"), "--port", "0")  # fmt: skip
    assert code == 2
    (line,) = [line for line in err.splitlines() if "error" in line]
    assert "Ray Serve did not start" in line and "no-python" in line
