"""pipeline.deployment's operations, the same code against moto and run-local's API.

One scenario, one client type (botocore's): once on moto's server (SageMaker, CloudWatch,
Application Auto Scaling), once on pipeline.local.sagemaker_api serving a store. approve,
teardown and the release have one implementation, so each scenario must end the same on
both. (moto lacks UpdateEndpoint: updates are tested in test_release.py.)
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from helpers.awsfakes import ROLE, moto_client, one_error_line, put_alarms, reset_moto_server

from dogbreed_jobs.release import Clients, read_scaling
from pipeline import cli, deployment
from pipeline.config import alarm_names, is_pipeline_config
from pipeline.errors import UsageError
from pipeline.local import alarms, endpoints, sagemaker_api
from pipeline.local.store import Store

GROUP = "dogbreed-classifier"
ENDPOINT = "dogbreed-classifier"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"
MODELS = ("s3://bucket/executions/aaa/model.tar.gz", "s3://bucket/executions/bbb/model.tar.gz")
SETTINGS = deployment.Settings(
    group=GROUP, endpoint_name=ENDPOINT, instance_type="ml.m5.xlarge", role_arn=ROLE
)


@pytest.fixture(params=["moto", "run-local"])
def clients(request, aws_env, tmp_path, moto_server):
    """Clients with two registered versions (MODELS) pending approval and the alarms."""
    if request.param == "moto":
        reset_moto_server(moto_server)
        clients = Clients(
            *(
                moto_client(moto_server, service)
                for service in ("sagemaker", "cloudwatch", "application-autoscaling")
            )
        )
        clients.sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        put_alarms(clients.cloudwatch, alarm_names(ENDPOINT))
        _registered(clients.sagemaker)
        yield clients
        return
    store = Store(tmp_path / "store")
    for url in MODELS:
        store.put_bytes(url, b"a model")  # a local endpoint serves a model of the store
    alarms.ensure(store, ENDPOINT, alarm_names(ENDPOINT))
    with sagemaker_api.connected(store) as clients:
        _registered(clients.sagemaker)
        yield clients


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


def test_approve_reject_and_teardown_end_the_same_on_aws_and_locally(clients):
    sagemaker = clients.sagemaker
    arn, deployed = deployment.approve(clients, SETTINGS, deployment.Approval("1"))
    assert deployed and arn.endswith(f":model-package/{GROUP}/1")
    assert status_of(sagemaker, arn) == "Approved"
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"].startswith(f"{ENDPOINT}-v1at")
    variant, model = deployment.served_variant(sagemaker, endpoint)
    assert variant["InstanceType"] == "ml.m5.xlarge"
    assert variant["VariantName"] == "AllTraffic" and variant["InitialInstanceCount"] == 1
    assert deployment.model_data(model) == MODELS[0]
    assert model["ExecutionRoleArn"] == ROLE
    # Autoscaling from the parameters' defaults: 1 to 4 instances, target tracking.
    target, policies = read_scaling(clients.autoscaling, ENDPOINT)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    (policy,) = policies
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 375.0
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }

    arn2, deployed = deployment.approve(
        clients, SETTINGS, deployment.Approval("2", reject=True, reason="overfits")
    )
    assert not deployed and status_of(sagemaker, arn2) == "Rejected"
    assert sagemaker.describe_model_package(ModelPackageName=arn2)["ApprovalDescription"] == (
        "overfits"
    )
    # The version already served: approved again, nothing deployed.
    assert deployment.approve(clients, SETTINGS, deployment.Approval("1")) == (arn, False)

    resources = deployment.endpoint_resources(clients, ENDPOINT)
    assert resources.endpoint == ENDPOINT
    assert resources.configs == [endpoint["EndpointConfigName"]]
    assert resources.models == [variant["ModelName"]]
    assert resources.scaling == [
        f"scaling policy {ENDPOINT}-invocations-per-instance",
        f"scalable target endpoint/{ENDPOINT}/variant/AllTraffic",
    ]
    deployment.delete_endpoint_resources(clients, resources)
    assert deployment.endpoint_resources(clients, ENDPOINT).empty
    assert read_scaling(clients.autoscaling, ENDPOINT) == (None, [])
    # The alarms are infra/'s: teardown leaves them.
    found = clients.cloudwatch.describe_alarms(AlarmNames=alarm_names(ENDPOINT))["MetricAlarms"]
    assert len(found) == 2
    # A second teardown finds nothing, and deleting what is gone is no error.
    deployment.delete_endpoint_resources(clients, dataclasses.replace(resources, scaling=[]))


def test_the_serving_version_is_found_and_rejecting_it_offers_the_previous_one(clients, caplog):
    assert deployment.serving(clients.sagemaker, GROUP, ENDPOINT) is None
    deployment.approve(clients, SETTINGS, deployment.Approval("1", deploy=False))
    deployment.approve(clients, SETTINGS, deployment.Approval("2"))
    found = deployment.serving(clients.sagemaker, GROUP, ENDPOINT)
    assert (found.version, found.approval, found.model_data) == (2, "Approved", MODELS[1])
    assert deployment.describe_serving(found, GROUP, ENDPOINT).startswith(
        f"endpoint {ENDPOINT} (InService) serves {GROUP} version 2 (Approved)"
    )
    caplog.set_level("WARNING", logger="pipeline.deployment")
    deployment.approve(clients, SETTINGS, deployment.Approval("2", reject=True))
    assert "roll back to version 1, the newest Approved one before it" in caplog.text
    assert deployment.serving(clients.sagemaker, GROUP, ENDPOINT).approval == "Rejected"


def test_a_fixed_fleet_gets_no_scaling_and_its_count(clients):
    fixed = dataclasses.replace(SETTINGS, instance_count=2, min_instances=2, max_instances=2)
    assert deployment.approve(clients, fixed, deployment.Approval("1"))[1]
    endpoint = clients.sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    variant, _ = deployment.served_variant(clients.sagemaker, endpoint)
    assert variant["InitialInstanceCount"] == 2
    assert read_scaling(clients.autoscaling, ENDPOINT) == (None, [])


def test_a_missing_alarm_is_refused_before_the_version_is_approved(clients):
    other = dataclasses.replace(SETTINGS, endpoint_name="no-alarms")
    with pytest.raises(UsageError, match=r"alarm no-alarms-5xx-rate, no-alarms-model-latency "
                       r"does not exist: deploy the stack in infra/"):  # fmt: skip
        deployment.approve(clients, other, deployment.Approval("1"))
    arn = deployment.package_arn(clients.sagemaker, GROUP, "1")
    assert status_of(clients.sagemaker, arn) == "PendingManualApproval"


def test_an_unknown_version_is_refused_naming_the_versions_there_are(clients):
    with pytest.raises(UsageError, match=rf"group {GROUP} has no version 9 \(versions: 1, 2\)"):
        deployment.approve(clients, SETTINGS, deployment.Approval("9"))
    with pytest.raises(UsageError, match="there is no model package group someone-elses"):
        deployment.approve(
            clients,
            deployment.Settings("someone-elses", ENDPOINT, None, ROLE),
            deployment.Approval("1"),
        )


def test_an_endpoint_of_another_naming_is_neither_replaced_nor_deleted(clients):
    sagemaker = clients.sagemaker
    container = {"Image": IMAGE, "ModelDataUrl": MODELS[0]}
    deployment.create_model(
        sagemaker, "theirs", {"PrimaryContainer": container, "ExecutionRoleArn": ROLE}
    )
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": "theirs",
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.xlarge",
    }
    sagemaker.create_endpoint_config(EndpointConfigName="hand-made", ProductionVariants=[variant])
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="hand-made")
    with pytest.raises(UsageError, match="'hand-made', which this pipeline did not create"):
        deployment.approve(clients, SETTINGS, deployment.Approval("1"))
    assert status_of(sagemaker, deployment.package_arn(sagemaker, GROUP, "1")) == (
        "PendingManualApproval"
    )
    with pytest.raises(UsageError, match="'hand-made', which this pipeline did not create"):
        deployment.endpoint_resources(clients, ENDPOINT)


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
        planned = deployment.release_of(
            settings, "m", "c", "ml.g5.xlarge", deployment.Approval("1")
        )
        assert planned.inference_ami_version == ami


def test_approve_reads_capacity_and_bake_from_the_upserted_definition():
    from pipeline.config import PipelineConfig
    from pipeline.definition import definition_dict

    definition = definition_dict(PipelineConfig())
    for parameter in definition["Parameters"]:
        changed = {"EndpointInstanceCount": 2, "EndpointMaxInstances": 6, "EndpointBakeSeconds": 60}
        parameter["DefaultValue"] = changed.get(parameter["Name"], parameter.get("DefaultValue"))
    settings = deployment.settings_of({"PipelineName": "p", "RoleArn": ROLE,
                                       "Definition": definition})  # fmt: skip
    assert (settings.instance_count, settings.min_instances, settings.max_instances) == (2, 1, 6)
    assert (settings.bake_seconds, settings.invocations_target) == (60, 375.0)
    assert (settings.endpoint_name, settings.instance_type) == (ENDPOINT, "ml.c7i.xlarge")
