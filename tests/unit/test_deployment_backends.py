"""pipeline.deployment's operations, the same code against moto's SageMaker and run-local's.

One scenario, one client type (botocore's): once on moto's server, once on
pipeline.local.sagemaker_api serving a store. approve, teardown and the deploy path have
one implementation, so each scenario must end the same on both.
"""

from __future__ import annotations

import json

import pytest
from helpers.awsfakes import ROLE, moto_client, one_error_line, reset_moto_server

from pipeline import cli, deployment
from pipeline.config import is_pipeline_config
from pipeline.errors import UsageError
from pipeline.local import endpoints, sagemaker_api
from pipeline.local.store import Store

GROUP = "dogbreed-classifier"
ENDPOINT = "dogbreed-classifier"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"
MODELS = ("s3://bucket/executions/aaa/model.tar.gz", "s3://bucket/executions/bbb/model.tar.gz")
SETTINGS = deployment.Settings(
    group=GROUP, endpoint_name=ENDPOINT, instance_type="ml.m5.xlarge", role_arn=ROLE
)


@pytest.fixture(params=["moto", "run-local"])
def sagemaker(request, aws_env, tmp_path, moto_server):
    """A SageMaker client with two registered versions (MODELS) pending approval."""
    if request.param == "moto":
        reset_moto_server(moto_server)
        client = moto_client(moto_server, "sagemaker")
        client.create_model_package_group(ModelPackageGroupName=GROUP)
        yield _registered(client)
        return
    store = Store(tmp_path / "store")
    for url in MODELS:
        store.put_bytes(url, b"a model")  # a local endpoint serves a model of the store
    with sagemaker_api.connected(store) as client:
        yield _registered(client)


def _registered(client):
    for url in MODELS:
        client.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={
                "Containers": [{"Image": IMAGE, "ModelDataUrl": url}],
                "SupportedContentTypes": ["image/jpeg"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )
    return client


def status_of(client, arn: str) -> str:
    return client.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"]


def test_approve_reject_and_teardown_end_the_same_on_aws_and_locally(sagemaker):
    arn, deployed = deployment.approve(sagemaker, SETTINGS, deployment.Approval("1"))
    assert deployed and arn.endswith(f":model-package/{GROUP}/1")
    assert status_of(sagemaker, arn) == "Approved"
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"].startswith(f"{ENDPOINT}-v1at")
    variant, model = deployment.served_variant(sagemaker, endpoint)
    assert variant["InstanceType"] == "ml.m5.xlarge"
    assert deployment.model_data(model) == MODELS[0]
    assert model["ExecutionRoleArn"] == ROLE

    arn2, deployed = deployment.approve(
        sagemaker, SETTINGS, deployment.Approval("2", reject=True, reason="overfits")
    )
    assert not deployed and status_of(sagemaker, arn2) == "Rejected"
    assert sagemaker.describe_model_package(ModelPackageName=arn2)["ApprovalDescription"] == (
        "overfits"
    )
    # The version already served: approved again, nothing deployed.
    assert deployment.approve(sagemaker, SETTINGS, deployment.Approval("1")) == (arn, False)

    resources = deployment.endpoint_resources(sagemaker, ENDPOINT)
    assert resources.endpoint == ENDPOINT
    assert resources.configs == [endpoint["EndpointConfigName"]]
    assert resources.models == [variant["ModelName"]]
    deployment.delete_endpoint_resources(sagemaker, resources)
    assert deployment.endpoint_resources(sagemaker, ENDPOINT).empty
    # A second teardown finds nothing, and deleting what is gone is no error.
    deployment.delete_endpoint_resources(sagemaker, resources)


def test_the_serving_version_is_found_and_rejecting_it_offers_the_previous_one(sagemaker, caplog):
    assert deployment.serving(sagemaker, GROUP, ENDPOINT) is None
    deployment.approve(sagemaker, SETTINGS, deployment.Approval("1", deploy=False))
    deployment.approve(sagemaker, SETTINGS, deployment.Approval("2"))
    found = deployment.serving(sagemaker, GROUP, ENDPOINT)
    assert (found.version, found.approval, found.model_data) == (2, "Approved", MODELS[1])
    assert deployment.describe_serving(found, GROUP, ENDPOINT).startswith(
        f"endpoint {ENDPOINT} (InService) serves {GROUP} version 2 (Approved)"
    )
    caplog.set_level("WARNING", logger="pipeline.deployment")
    deployment.approve(sagemaker, SETTINGS, deployment.Approval("2", reject=True))
    assert "roll back to version 1, the newest Approved one before it" in caplog.text
    assert deployment.serving(sagemaker, GROUP, ENDPOINT).approval == "Rejected"


def test_an_unknown_version_is_refused_naming_the_versions_there_are(sagemaker):
    with pytest.raises(UsageError, match=rf"group {GROUP} has no version 9 \(versions: 1, 2\)"):
        deployment.approve(sagemaker, SETTINGS, deployment.Approval("9"))
    with pytest.raises(UsageError, match="there is no model package group someone-elses"):
        deployment.approve(
            sagemaker,
            deployment.Settings("someone-elses", ENDPOINT, None, ROLE),
            deployment.Approval("1"),
        )


def test_an_endpoint_of_another_naming_is_neither_replaced_nor_deleted(sagemaker):
    container = {"Image": IMAGE, "ModelDataUrl": MODELS[0]}
    deployment.create_model(
        sagemaker, "theirs", {"PrimaryContainer": container, "ExecutionRoleArn": ROLE}
    )
    request = deployment.config_request(SETTINGS, "theirs", "ml.m5.xlarge")
    deployment.create_endpoint_config(sagemaker, "hand-made", request)
    deployment.deploy_endpoint(sagemaker, ENDPOINT, "hand-made")
    with pytest.raises(UsageError, match="'hand-made', which this pipeline did not create"):
        deployment.approve(sagemaker, SETTINGS, deployment.Approval("1"))
    assert status_of(sagemaker, deployment.package_arn(sagemaker, GROUP, "1")) == (
        "PendingManualApproval"
    )
    with pytest.raises(UsageError, match="'hand-made', which this pipeline did not create"):
        deployment.endpoint_resources(sagemaker, ENDPOINT)


@pytest.mark.parametrize(
    ("config", "ours"),
    [
        (f"{ENDPOINT}-0a1b2c3d4e5f", True),  # the deploy step on SageMaker
        (f"{ENDPOINT}-local-20261201T221142-3f16", True),  # the deploy step under run-local
        (f"{ENDPOINT}-v2at1764633600", True),  # approve
        ("hand-made", False),
        (f"{ENDPOINT}-local-x", False),
        (f"{ENDPOINT}-Hand-Made", False),
        (f"other-{ENDPOINT}-0a1b2c3d4e5f", False),
    ],
)
def test_the_pipelines_configuration_names_are_known_by_one_rule(config, ours):
    assert is_pipeline_config(ENDPOINT, config) is ours


def test_an_operation_the_local_api_does_not_answer_is_refused_in_one_line(tmp_path):
    with sagemaker_api.Server(Store(tmp_path)) as api:
        with pytest.raises(endpoints.EndpointError) as refused:
            with sagemaker_api.job_client(api.environment()) as client:
                client.list_training_jobs()
    message = str(refused.value)
    assert "UnknownOperationException" in message and "ListTrainingJobs" in message
    assert "\n" not in message


def test_a_local_answer_botocore_cannot_parse_is_one_line(tmp_path, capsys):
    store = Store(tmp_path / "store")
    store.endpoints.mkdir(parents=True)
    damaged = {"EndpointName": ENDPOINT, "CreationTime": "yesterday-ish"}
    (store.endpoints / f"{ENDPOINT}.json").write_text(json.dumps(damaged))
    with sagemaker_api.Server(store) as api:
        with pytest.raises(endpoints.EndpointError) as refused:
            with sagemaker_api.job_client(api.environment()) as client:
                client.describe_endpoint(EndpointName=ENDPOINT)
    assert "yesterday-ish" in str(refused.value) and "\n" not in str(refused.value)

    code = cli.main(["teardown", "--yes", "--store", str(store.root)])
    assert code != 0
    assert "run-local's SageMaker API" in one_error_line(capsys.readouterr().err)


def test_approve_deploys_a_gpu_definition_on_its_host_ami():
    """The AMI the pipeline's endpoint configuration names goes into approve's too, and only
    into a GPU definition's (a CPU one keeps SageMaker's default host AMI)."""
    from pipeline.config import PipelineConfig
    from pipeline.definition import definition_dict

    for gpu, ami in ((True, "al2-ami-sagemaker-inference-gpu-3-1"), (False, None)):
        definition = definition_dict(PipelineConfig(gpu_endpoint=gpu))
        settings = deployment.settings_of({"PipelineName": "p", "RoleArn": ROLE,
                                           "Definition": definition})  # fmt: skip
        assert settings.inference_ami_version == ami
        (variant,) = deployment.config_request(settings, "m", "ml.g5.xlarge")["ProductionVariants"]
        assert variant.get("InferenceAmiVersion") == ami
