"""The installed `dogbreed-pipeline` console script in a subprocess, against moto's server.

What a user runs: the entry point, AWS_ENDPOINT_URL, the standard environment, and one line
on stderr for what they can fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers.awsfakes import DEFAULT_BUCKET, REGION, ROLE, SECRET, moto_client, put_alarms

from pipeline.config import alarm_names

CLI = Path(sys.executable).parent / "dogbreed-pipeline"
UPSERT = ("upsert", "--role-arn", ROLE)


@pytest.fixture
def server_env(moto_server, tmp_path):
    urllib.request.urlopen(
        urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    ).close()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE",
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_ENDPOINT_URL=moto_server,
    )
    return env


def _cli(env, *argv, timeout=300):
    return subprocess.run([CLI, *argv], env=env, capture_output=True, text=True, timeout=timeout)


def test_installed_cli_upserts_through_aws_endpoint_url(server_env, moto_server, tmp_path):
    s3 = moto_client(moto_server, "s3")
    s3.create_bucket(Bucket=DEFAULT_BUCKET)
    result = _cli(server_env, *UPSERT, "--tag", "team=vision")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and SECRET not in result.stderr + result.stdout
    client = moto_client(moto_server, "sagemaker")
    stored = client.describe_pipeline(PipelineName="dogbreed-pipeline")
    assert result.stdout == f"{stored['PipelineArn']}\n"
    tags = client.list_tags(ResourceArn=stored["PipelineArn"])["Tags"]
    assert tags == [{"Key": "team", "Value": "vision"}]
    # What the user would diff: export for the same settings equals what upsert stored.
    out = tmp_path / "exported.json"
    exported = _cli(
        server_env, "export", "--out", str(out), "--role-arn", ROLE, "--bucket", DEFAULT_BUCKET
    )
    assert exported.returncode == 0, exported.stderr
    assert stored["PipelineDefinition"] == out.read_text()


def test_installed_cli_bad_parameter_is_one_line_without_traceback(server_env, moto_server):
    client = moto_client(moto_server, "sagemaker")
    client.create_pipeline(
        PipelineName="dogbreed-pipeline",
        RoleArn=ROLE,
        PipelineDefinition=json.dumps(
            {"Parameters": [{"Name": "Epochs", "Type": "Integer", "DefaultValue": 1}]}
        ),
    )
    result = _cli(server_env, "start", "--param", "Epochs=lots", timeout=60)
    assert result.returncode == 2
    assert result.stderr == (
        "dogbreed-pipeline: error: --param Epochs expects an Integer, got 'lots'\n"
    )
    assert result.stdout == ""


def test_installed_cli_without_credentials_is_one_line_without_traceback(server_env):
    del server_env["AWS_ACCESS_KEY_ID"], server_env["AWS_SECRET_ACCESS_KEY"]
    result = _cli(server_env, "status", timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("dogbreed-pipeline: error: no AWS credentials found")
    assert result.stderr.count("\n") == 1


def test_installed_cli_upsert_approve_teardown(server_env, moto_server):
    """A person's approval path: the pipeline upserted, a version approved and deployed as
    the upserted definition's deploy steps would, then everything deleted again."""
    moto_client(moto_server, "s3").create_bucket(Bucket=DEFAULT_BUCKET)
    assert _cli(server_env, *UPSERT).returncode == 0
    sagemaker = moto_client(moto_server, "sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName="dogbreed-classifier")
    model_data = f"s3://{DEFAULT_BUCKET}/dogbreed-pipeline/executions/x/model.tar.gz"
    arn = sagemaker.create_model_package(
        ModelPackageGroupName="dogbreed-classifier",
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": "image", "ModelDataUrl": model_data}],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )["ModelPackageArn"]

    # The stack in infra/ makes the endpoint's auto-rollback alarms.
    put_alarms(moto_client(moto_server, "cloudwatch"), alarm_names("dogbreed-classifier"))

    # moto (5.2.6) refuses the default ml.c7i.xlarge: its instance list predates the 7th
    # generation that botocore's ProductionVariantInstanceType has (tests/unit/test_approve.py).
    result = _cli(server_env, "approve", "--model-version", "1", "--instance-type", "ml.m5.xlarge")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{arn}\n"
    described = sagemaker.describe_model_package(ModelPackageName=arn)
    assert described["ModelApprovalStatus"] == "Approved"
    endpoint = sagemaker.describe_endpoint(EndpointName="dogbreed-classifier")
    assert endpoint["EndpointStatus"] == "InService"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == model_data
    assert model["ExecutionRoleArn"] == ROLE  # the upserted definition's role
    scaling = moto_client(moto_server, "application-autoscaling")
    (target,) = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert target["ResourceId"] == "endpoint/dogbreed-classifier/variant/AllTraffic"

    result = _cli(server_env, "teardown", "--yes")
    assert result.returncode == 0, result.stderr
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert sagemaker.list_models()["Models"] == []
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
