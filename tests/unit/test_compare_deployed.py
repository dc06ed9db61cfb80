"""scripts/compare_deployed.py, run unchanged against moto's SageMaker and run-local's.

The same script, the same botocore client: once against moto's server (SageMaker as moto
implements it), once against pipeline.local.sagemaker_api serving a store, each deployment
made by the same boto3 calls. The same deployment must give the same verdict on both.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from helpers.awsfakes import REGION, ROLE, moto_client, reset_moto_server

from dogbreed_jobs import compare_deployed
from pipeline.local import sagemaker_api
from pipeline.local.store import Store

GROUP = "dogbreed-classifier"
ENDPOINT = "dogbreed-classifier"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"
OLD = "s3://bucket/executions/aaa/model.tar.gz"
NEW = "s3://bucket/executions/bbb/model.tar.gz"
NO_CHAMPION = "s3://bucket/code/0123/no-champion/"


def compare(tmp_path, model_data: str) -> tuple[int, dict | None]:
    out = tmp_path / "out"
    code = compare_deployed.main(
        [
            "--model-data",
            model_data,
            "--endpoint-name",
            ENDPOINT,
            "--model-package-group",
            GROUP,
            "--region",
            REGION,
            "--output-dir",
            str(out),
            "--no-champion-uri",
            NO_CHAMPION,
        ]
    )
    path = out / "model_change.json"
    return code, json.loads(path.read_text()) if path.is_file() else None


class MotoSageMaker:
    """A deployment made through boto3 on moto's server."""

    def __init__(self, url: str):
        self.client = moto_client(url, "sagemaker")

    def register(self, model_data: str, status: str) -> None:
        try:
            self.client.create_model_package_group(ModelPackageGroupName=GROUP)
        except self.client.exceptions.ClientError:
            pass  # already there
        self.client.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus=status,
            InferenceSpecification={
                "Containers": [{"Image": IMAGE, "ModelDataUrl": model_data}],
                "SupportedContentTypes": ["image/jpeg"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )

    def deploy(self, model_data: str, tag: str) -> None:
        self.client.create_model(
            ModelName=f"model-{tag}",
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": model_data},
            ExecutionRoleArn=ROLE,
        )
        self.client.create_endpoint_config(
            EndpointConfigName=f"{ENDPOINT}-{tag}",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": f"model-{tag}",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.xlarge",
                }
            ],
        )
        self.client.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=f"{ENDPOINT}-{tag}")


class LocalSageMaker(MotoSageMaker):
    """The same deployment made through boto3 on run-local's SageMaker API."""

    def __init__(self, url: str, store: Store):
        self.client = sagemaker_api.client(url)
        self.store = store

    def deploy(self, model_data: str, tag: str) -> None:
        self.store.put_bytes(model_data, b"a model")  # a local endpoint serves the store's
        super().deploy(model_data, tag)


@pytest.fixture(params=["moto", "run-local"])
def sagemaker(request, aws_env, tmp_path, moto_server):
    """(a deployment builder, ...) with AWS_ENDPOINT_URL_SAGEMAKER pointing at its API."""
    if request.param == "moto":
        reset_moto_server(moto_server)
        aws_env.setenv("AWS_ENDPOINT_URL_SAGEMAKER", moto_server)
        yield MotoSageMaker(moto_server)
        return
    store = Store(tmp_path / "store")
    with sagemaker_api.Server(store) as api:
        for key, value in api.environment().items():
            if value is None:
                aws_env.delenv(key, raising=False)
            else:
                aws_env.setenv(key, value)
        yield LocalSageMaker(api.url, store)


def test_with_nothing_deployed_or_registered_the_model_is_new(sagemaker, tmp_path, capsys):
    code, report = compare(tmp_path, NEW)
    assert code == 0
    assert report["decision"] == "new"
    assert report["endpoint"] is None and report["latest_version"] is None
    assert "is a new model" in capsys.readouterr().out


def test_the_model_the_endpoint_serves_is_unchanged(sagemaker, tmp_path, capsys):
    sagemaker.register(OLD, "Approved")
    sagemaker.deploy(OLD, "0a1b2c")
    code, report = compare(tmp_path, OLD)
    assert code == 0
    assert report["decision"] == "unchanged"
    assert report["endpoint"]["model_data"] == OLD
    assert report["endpoint"]["config"] == f"{ENDPOINT}-0a1b2c"
    out = capsys.readouterr().out
    assert f"endpoint {ENDPOINT} already serves {OLD}" in out
    assert "registration and deployment skipped" in out


def test_a_model_awaiting_approval_is_not_registered_again(sagemaker, tmp_path, capsys):
    sagemaker.register(OLD, "Approved")
    sagemaker.deploy(OLD, "0a1b2c")
    sagemaker.register(NEW, "PendingManualApproval")
    code, report = compare(tmp_path, NEW)
    assert code == 0
    assert report["decision"] == "unchanged"
    assert report["latest_version"]["version"] == 2
    assert report["latest_version"]["status"] == "PendingManualApproval"
    assert "approve --model-version 2` deploys it" in capsys.readouterr().out


def test_a_retrained_model_is_new_even_with_an_endpoint_and_versions(sagemaker, tmp_path):
    sagemaker.register(OLD, "Approved")
    sagemaker.deploy(OLD, "0a1b2c")
    code, report = compare(tmp_path, NEW)
    assert code == 0
    assert report["decision"] == "new"
    assert report["endpoint"]["model_data"] == OLD
    assert report["latest_version"]["model_data"] == OLD


def test_the_champion_is_the_model_the_endpoint_serves(sagemaker, tmp_path, capsys):
    code, report = compare(tmp_path, NEW)
    assert code == 0
    assert report["champion"] == {
        "status": "none",
        "model_data": "",
        "uri": NO_CHAMPION,
        "note": "no endpoint yet (a first deployment)",
    }
    sagemaker.register(OLD, "Approved")
    sagemaker.deploy(OLD, "0a1b2c")
    code, report = compare(tmp_path, NEW)
    assert report["champion"]["status"] == "serving"
    # EvaluateModel's champion input is the served model.tar.gz itself.
    assert report["champion"]["uri"] == report["champion"]["model_data"] == OLD
    assert f"endpoint {ENDPOINT} serves {OLD} (model model-0a1b2c)" in capsys.readouterr().out
    code, report = compare(tmp_path, OLD)
    assert report["champion"]["status"] == "same"
    assert report["champion"]["uri"] == NO_CHAMPION


def test_an_endpoint_whose_model_was_deleted_is_unreadable_not_absent(sagemaker, tmp_path):
    sagemaker.register(OLD, "Approved")
    sagemaker.deploy(OLD, "0a1b2c")
    sagemaker.client.delete_model(ModelName="model-0a1b2c")
    code, report = compare(tmp_path, NEW)
    assert code == 0
    champion = report["champion"]
    assert champion["status"] == "unreadable"
    assert champion["uri"] == NO_CHAMPION
    assert champion["note"].startswith(f"endpoint {ENDPOINT} serves a model this pipeline cannot")
    assert "model-0a1b2c" in champion["note"]


def test_a_failed_endpoint_serves_nothing_so_its_model_is_deployed_again():
    endpoint = {
        "name": ENDPOINT,
        "status": "Failed",
        "config": "c",
        "model": "m",
        "model_data": OLD,
    }
    assert compare_deployed.decide(OLD, endpoint, None)["decision"] == "new"
    assert compare_deployed.decide(OLD, endpoint, None)["champion"]["status"] == "none"
    endpoint["status"] = "Updating"
    assert compare_deployed.decide(OLD, endpoint, None)["decision"] == "unchanged"


def test_an_unreachable_api_fails_the_step_instead_of_guessing(aws_env, tmp_path, capsys):
    # Port 9 (discard) on 127.0.0.1 answers nothing: no decision may be written.
    aws_env.setenv("AWS_ENDPOINT_URL_SAGEMAKER", "http://127.0.0.1:9")
    aws_env.setenv("AWS_MAX_ATTEMPTS", "1")
    code, report = compare(tmp_path, NEW)
    assert code == 1
    assert report is None
    assert "cannot compare with the deployed model" in capsys.readouterr().err


def test_the_local_api_refuses_what_it_does_not_implement(tmp_path):
    store = Store(tmp_path / "store")
    with sagemaker_api.Server(store) as api:
        request = urllib.request.Request(
            api.url,
            data=b"{}",
            headers={"X-Amz-Target": "SageMaker.CreateTrainingJob"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request)
        body = json.loads(caught.value.read())
    assert caught.value.code == 400
    assert body["__type"] == "UnknownOperationException"
