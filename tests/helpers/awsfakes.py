"""Helpers for tests of the AWS-facing CLI (the fixtures using them are in aws_fixtures.py).

Only what moto lacks is stubbed (ListPipelineExecutionSteps), and errors real AWS returns but
moto does not produce (AccessDenied) are injected as AWS-shaped responses; everything else
is moto's own behaviour.
"""

from __future__ import annotations

import json
import types

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"  # must never reach the output
ROLE = f"arn:aws:iam::{ACCOUNT}:role/DogbreedPipelineExecution"
SCHEDULER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/DogbreedScheduler"
DEFAULT_BUCKET = f"sagemaker-{REGION}-{ACCOUNT}"

# A definition written by hand for start/status/schedule: one parameter of every type.
DEFINITION = {
    "Version": "2020-12-01",
    "Parameters": [
        {"Name": "Epochs", "Type": "Integer", "DefaultValue": 5},
        {"Name": "AccuracyThreshold", "Type": "Float", "DefaultValue": 0.7},
        {"Name": "Pretrained", "Type": "Boolean", "DefaultValue": True},
        {"Name": "InstanceType", "Type": "String", "DefaultValue": "ml.m5.xlarge"},
        {
            "Name": "ModelApprovalStatus",
            "Type": "String",
            "DefaultValue": "Approved",
            "EnumValues": ["Approved", "PendingManualApproval"],
        },
    ],
    "Steps": [],
}


def ok(parsed: dict):
    """A before-call handler's answer that botocore treats as a 200 response."""
    return types.SimpleNamespace(status_code=200, headers={}), parsed


def aws_error(code: str, message: str, status: int = 400):
    """A before-call handler's answer that botocore raises as this ClientError."""
    parsed = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {}}
    return types.SimpleNamespace(status_code=status, headers={}), parsed


class Calls:
    """Every AWS operation the CLI calls, in order; `stubs` answers chosen ones instead."""

    def __init__(self):
        self.ops: list[str] = []
        self.params: list[dict] = []
        self.stubs: dict = {}  # operation name -> callable(params) -> ok(...) / aws_error(...)
        self.sessions: list = []

    def _record(self, event_name, params, **kwargs):
        # before-parameter-build sees the API parameters as the caller passed them.
        self.ops.append(event_name.split(".")[-1])
        self.params.append(dict(params))

    def _answer(self, event_name, **kwargs):
        # before-call may answer instead of AWS; the stub gets the API parameters.
        stub = self.stubs.get(event_name.split(".")[-1])
        return stub(self.params[-1]) if stub else None

    def called(self, operation: str) -> list[dict]:
        return [p for op, p in zip(self.ops, self.params, strict=True) if op == operation]

    def count(self, operation: str) -> int:
        return self.ops.count(operation)


def steps_response(*steps: tuple[str, str, str]):
    """A ListPipelineExecutionSteps stub (moto lacks it): (name, type, status) per step."""
    from datetime import datetime, timezone

    start = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    listed = [
        {
            "StepName": name,
            "StepDisplayName": name,
            "StepType": kind,
            "StepStatus": status,
            "StartTime": start.replace(minute=index),
            **({"EndTime": start.replace(minute=index + 1)} if status == "Succeeded" else {}),
            **({"FailureReason": "ClientError: out of memory"} if status == "Failed" else {}),
        }
        for index, (name, kind, status) in enumerate(steps)
    ]
    # AWS lists the newest first unless asked for SortOrder=Ascending.
    return lambda params: ok(
        {
            "PipelineExecutionSteps": listed
            if params.get("SortOrder") == "Ascending"
            else listed[::-1]
        }
    )


def reset_moto_server(moto_server: str) -> None:
    """Forget every resource moto's shared server holds (one server serves the session)."""
    import urllib.request

    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(request).close()


def moto_client(moto_server: str, service: str):
    """A client of moto's server (tests/helpers/aws_fixtures.py: moto_server) with test keys."""
    import boto3

    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=moto_server,
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )


def create_pipeline(name: str = "dogbreed-pipeline", definition: dict | None = None) -> str:
    import boto3

    client = boto3.client("sagemaker", region_name=REGION)
    return client.create_pipeline(
        PipelineName=name,
        PipelineDefinition=json.dumps(definition or DEFINITION),
        RoleArn=ROLE,
    )["PipelineArn"]


def moto_execution(arn: str):
    """moto's record of an execution, to play the part of a running one."""
    from moto.sagemaker.models import sagemaker_backends

    pipeline = arn.split(":pipeline/")[1].split("/")[0]
    return sagemaker_backends[ACCOUNT][REGION].pipelines[pipeline].pipeline_executions[arn]


def no_traceback(text: str) -> bool:
    return "Traceback" not in text and SECRET not in text


def one_error_line(err: str) -> str:
    """The error line of stderr, asserting there is exactly one."""
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert no_traceback(err), err
    return lines[0]


def put_alarms(cloudwatch, names) -> None:
    """infra/'s auto-rollback alarms for the names given, as moto holds them, in state OK."""
    for name in names:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            ComparisonOperator="GreaterThanThreshold",
            EvaluationPeriods=1,
            Threshold=1.0,
            Metrics=[{"Id": "m", "Expression": "0", "ReturnData": True}],
        )
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="quiet")
