"""`approve` against moto (SageMaker, CloudWatch, Application Auto Scaling), and with
--store against run-local's API.

moto has the registry, models, configurations and endpoints, the alarms, the scalable
targets and policies, and DescribePipeline with the committed definition; it lacks
UpdateEndpoint, which is stubbed here by applying the update to moto's own endpoint record,
so later DescribeEndpoint calls see it as SageMaker would.
"""

from __future__ import annotations

import json

import boto3
import pytest
from helpers.awsfakes import ACCOUNT, REGION, aws_error, create_pipeline, ok, one_error_line
from helpers.paths import ROOT

from dogbreed_jobs.release import read_scaling
from pipeline import cli
from pipeline.config import alarm_names
from pipeline.local import alarms, endpoints, registry
from pipeline.local.store import Store

GROUP = "dogbreed-classifier"
ENDPOINT = "dogbreed-classifier"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-gpu-py312"
# moto (5.2.6) checks CreateEndpointConfig's InstanceType against an instance list of its own
# that predates the 7th generation and refuses the committed default (ml.c7i.xlarge, which
# botocore's and so SageMaker's ProductionVariantInstanceType lists); the pipeline moto describes
# defaults to a type it knows, and the tests check that the default reaches the endpoint.
MOTO_INSTANCE_TYPE = "ml.m5.xlarge"
DEFINITION = json.loads((ROOT / "pipeline_definition.json").read_text())
for _parameter in DEFINITION["Parameters"]:
    if _parameter["Name"] == "EndpointInstanceType":
        _parameter["DefaultValue"] = MOTO_INSTANCE_TYPE


def run(capsys, *argv):
    code = cli.main(["approve", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def sagemaker():
    return boto3.client("sagemaker", region_name=REGION)


def arn_of(version: int, group: str = GROUP) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/{version}"


def register(model_data: str, status: str = "PendingManualApproval", group: str = GROUP):
    client = sagemaker()
    try:
        client.create_model_package_group(ModelPackageGroupName=group)
    except client.exceptions.ClientError:
        pass  # already there
    return client.create_model_package(
        ModelPackageGroupName=group,
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [
                {
                    "Image": IMAGE,
                    "ModelDataUrl": model_data,
                    "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
                }
            ],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )["ModelPackageArn"]


def status_of(version: int) -> str:
    return sagemaker().describe_model_package(ModelPackageName=arn_of(version))[
        "ModelApprovalStatus"
    ]


def serving() -> str:
    """The ModelDataUrl the endpoint serves now."""
    client = sagemaker()
    config = client.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    variant = client.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]
    return client.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]["ModelDataUrl"]


def apply_update(params):
    """UpdateEndpoint as SageMaker completes it, on moto's record."""
    from moto.sagemaker.models import sagemaker_backends

    endpoint = sagemaker_backends[ACCOUNT][REGION].endpoints[params["EndpointName"]]
    endpoint.endpoint_config_name = params["EndpointConfigName"]
    return ok({"EndpointArn": endpoint.arn})


@pytest.fixture
def pipeline(moto, calls):
    create_pipeline(definition=DEFINITION)
    # infra/'s auto-rollback alarms.
    for name in alarm_names(ENDPOINT):
        boto3.client("cloudwatch", region_name=REGION).put_metric_alarm(
            AlarmName=name,
            ComparisonOperator="GreaterThanThreshold",
            EvaluationPeriods=1,
            Threshold=1.0,
            Metrics=[{"Id": "m", "Expression": "0", "ReturnData": True}],
        )
    return calls


def test_approve_deploys_as_the_deploy_steps_do_and_waits_for_in_service(pipeline, capsys):
    register("s3://bucket/executions/a/model.tar.gz")
    code, out, err = run(
        capsys, "--model-version", "1", "--reason", "looked at the confusion matrix"
    )
    assert code == 0, err
    assert out.strip() == arn_of(1)
    package = sagemaker().describe_model_package(ModelPackageName=arn_of(1))
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["ApprovalDescription"] == "looked at the confusion matrix"

    endpoint = sagemaker().describe_endpoint(EndpointName=ENDPOINT)
    config_name = endpoint["EndpointConfigName"]
    assert config_name.startswith(f"{ENDPOINT}-v1at")
    config = sagemaker().describe_endpoint_config(EndpointConfigName=config_name)
    (variant,) = config["ProductionVariants"]
    # The definition's EndpointInstanceType default.
    assert variant["InstanceType"] == MOTO_INSTANCE_TYPE
    model = sagemaker().describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://bucket/executions/a/model.tar.gz"
    assert model["PrimaryContainer"]["Image"] == IMAGE
    (create_model,) = pipeline.called("CreateModel")
    assert create_model["ExecutionRoleArn"].endswith(":role/DogbreedPipelineExecutionRole")
    assert f"creating endpoint {ENDPOINT}" in err
    assert f"endpoint {ENDPOINT} created on {config_name}: autoscaling 1-4 instances" in err
    assert "version 1 serves" in err
    target, _ = read_scaling(boto3.client("application-autoscaling", region_name=REGION), ENDPOINT)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    # teardown knows the configuration as the pipeline's own.
    code, _, err = cli.main(["teardown", "--yes"]), *capsys.readouterr()
    assert code == 0, err
    assert sagemaker().list_endpoints()["Endpoints"] == []


def test_a_later_version_updates_the_endpoint_and_the_same_one_is_not_redeployed(pipeline, capsys):
    register("s3://bucket/executions/a/model.tar.gz")
    register("s3://bucket/executions/b/model.tar.gz")
    assert run(capsys, "--model-version", "1")[0] == 0
    pipeline.stubs["UpdateEndpoint"] = apply_update
    code, out, err = run(capsys, "--model-version", arn_of(2))
    assert code == 0, err
    assert serving() == "s3://bucket/executions/b/model.tar.gz"
    assert f"updating endpoint {ENDPOINT}" in err
    assert "blue/green, 600s bake watched by" in err
    (update,) = pipeline.called("UpdateEndpoint")
    assert update["DeploymentConfig"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600},
            "TerminationWaitInSeconds": 600,
            "MaximumExecutionTimeoutInSeconds": 3000,
        },
        "AutoRollbackConfiguration": {
            "Alarms": [
                {"AlarmName": f"{ENDPOINT}-5xx-rate"},
                {"AlarmName": f"{ENDPOINT}-model-latency"},
            ]
        },
    }

    configs = pipeline.count("CreateEndpointConfig")
    code, out, err = run(capsys, "--model-version", "2")
    assert code == 0, err
    assert "already serves s3://bucket/executions/b/model.tar.gz: nothing to deploy" in err
    assert pipeline.count("CreateEndpointConfig") == configs


def test_a_failed_update_says_the_old_configuration_still_serves(pipeline, capsys):
    register("s3://bucket/executions/a/model.tar.gz")
    register("s3://bucket/executions/b/model.tar.gz")
    assert run(capsys, "--model-version", "1")[0] == 0
    old = sagemaker().describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    # SageMaker rolled the update back: InService again, on the old configuration.
    pipeline.stubs["UpdateEndpoint"] = lambda params: ok({"EndpointArn": "arn"})
    real = sagemaker().describe_endpoint(EndpointName=ENDPOINT)
    rolled_back = {**real, "FailureReason": "the model container did not pass ping"}
    pipeline.stubs["DescribeEndpoint"] = lambda params: ok(rolled_back)
    code, out, err = run(capsys, "--model-version", "2")
    assert code == 1
    line = one_error_line(err)
    assert f"endpoint {ENDPOINT} rolled back to {old}: no alarm fired" in line
    assert "did not pass ping" in line
    assert serving() == "s3://bucket/executions/a/model.tar.gz"


def test_reject_records_the_reason_and_deploys_nothing(pipeline, capsys):
    register("s3://bucket/executions/a/model.tar.gz")
    code, out, err = run(capsys, "--model-version", "1", "--reject", "--reason", "overfits")
    assert code == 0, err
    package = sagemaker().describe_model_package(ModelPackageName=arn_of(1))
    assert package["ModelApprovalStatus"] == "Rejected"
    assert package["ApprovalDescription"] == "overfits"
    assert pipeline.count("CreateModel") == 0
    assert sagemaker().list_endpoints()["Endpoints"] == []


def test_no_deploy_only_approves(pipeline, capsys):
    register("s3://bucket/executions/a/model.tar.gz")
    code, out, err = run(capsys, "--model-version", "1", "--no-deploy")
    assert code == 0, err
    assert status_of(1) == "Approved"
    assert pipeline.count("CreateModel") == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model-version", "7"], f"model package group {GROUP} has no version 7"),
        (["--model-version", "latest"], "neither a version number nor a model package ARN"),
        (
            ["--model-version", arn_of(1, "someone-elses")],
            f"is a version of model package group someone-elses, not of {GROUP}",
        ),
    ],
)
def test_a_version_that_is_not_the_pipelines_is_refused_and_nothing_changes(
    pipeline, capsys, argv, message
):
    register("s3://bucket/executions/a/model.tar.gz")
    register("s3://bucket/executions/x/model.tar.gz", group="someone-elses")
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in one_error_line(err)
    assert pipeline.count("UpdateModelPackage") == 0
    assert status_of(1) == "PendingManualApproval"


@pytest.mark.parametrize(
    ("endpoint_status", "message"),
    [
        ("Failed", "is Failed (capacity): SageMaker cannot update it"),
        ("Updating", "is Updating: deploy again once it is InService"),
    ],
)
def test_an_endpoint_that_cannot_take_an_update_is_refused_before_approving(
    pipeline, capsys, endpoint_status, message
):
    register("s3://bucket/executions/a/model.tar.gz")
    described = {
        "EndpointName": ENDPOINT,
        "EndpointArn": "arn",
        "EndpointConfigName": f"{ENDPOINT}-0a1b2c3d4e5f",
        "EndpointStatus": endpoint_status,
        "FailureReason": "capacity",
        "CreationTime": 0,
        "LastModifiedTime": 0,
    }
    pipeline.stubs["DescribeEndpoint"] = lambda params: ok(described)
    code, out, err = run(capsys, "--model-version", "1")
    assert code == 2
    assert f"endpoint {ENDPOINT} {message}" in one_error_line(err)
    assert status_of(1) == "PendingManualApproval"
    assert pipeline.count("CreateModel") == 0


def test_an_endpoint_of_another_naming_is_not_replaced(pipeline, capsys):
    register("s3://bucket/executions/a/model.tar.gz")
    client = sagemaker()
    client.create_model(
        ModelName="theirs",
        ExecutionRoleArn="arn:aws:iam::1:role/r",
        PrimaryContainer={"Image": IMAGE},
    )
    client.create_endpoint_config(
        EndpointConfigName="hand-made",
        ProductionVariants=[
            {
                "VariantName": "a",
                "ModelName": "theirs",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
            }
        ],
    )
    client.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="hand-made")
    code, out, err = run(capsys, "--model-version", "1")
    assert code == 2
    assert "serves configuration 'hand-made', which this pipeline did not create" in (
        one_error_line(err)
    )
    assert status_of(1) == "PendingManualApproval"


def test_without_the_pipeline_there_is_nothing_to_deploy_as(moto, capsys):
    code, out, err = run(capsys, "--model-version", "1")
    assert code == 2
    assert "pipeline 'dogbreed-pipeline' does not exist" in one_error_line(err)


def test_access_denied_is_one_line_and_changes_nothing(pipeline, capsys):
    register("s3://bucket/executions/a/model.tar.gz")
    pipeline.stubs["UpdateModelPackage"] = lambda params: aws_error(
        "AccessDeniedException", "not authorized to perform: sagemaker:UpdateModelPackage"
    )
    code, out, err = run(capsys, "--model-version", "1")
    assert code == 2
    assert "sagemaker:UpdateModelPackage" in one_error_line(err)
    assert pipeline.count("CreateModel") == 0


# --------------------------------------------------------------------------- --store


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(tmp_path / "store")
    for tag in ("a", "b"):
        url = f"s3://bucket/executions/{tag}/model.tar.gz"
        store.put_bytes(url, b"a model")
        package = {
            "ModelApprovalStatus": "PendingManualApproval",
            "ModelDataUrl": url,
            "InferenceSpecification": {"Containers": [{"Image": IMAGE, "ModelDataUrl": url}]},
        }
        registry.register(store.registry, GROUP, package)
    return store


def test_approve_in_a_store_deploys_there_and_serve_local_finds_it(store, capsys):
    assert not (store.root / "alarms").exists()
    code, out, err = run(capsys, "--store", str(store.root), "--model-version", "2")
    assert code == 0, err
    assert out.strip() == registry.package_arn(GROUP, 2)
    assert registry.version(store.registry, GROUP, 2)["ModelApprovalStatus"] == "Approved"
    assert registry.version(store.registry, GROUP, 1)["ModelApprovalStatus"] == (
        "PendingManualApproval"
    )
    endpoint = json.loads((store.endpoints / f"{ENDPOINT}.json").read_text())
    assert endpoint["ModelDataUrl"] == "s3://bucket/executions/b/model.tar.gz"
    assert endpoint["EndpointConfigName"].startswith(f"{ENDPOINT}-v2at")
    assert endpoint["ModelPackageArn"] == registry.package_arn(GROUP, 2)
    assert "serve-local --store" in err
    # The local stand-ins for infra/'s alarms, made in state OK; the scaling registered.
    states = [a["StateValue"] for a in alarms.describe(store, alarm_names(ENDPOINT))]
    assert states == ["OK", "OK"]
    assert (store.root / "scaling" / f"{ENDPOINT}.AllTraffic.json").is_file()

    code, out, err = run(capsys, "--store", str(store.root), "--model-version", "2")
    assert code == 0
    assert "already serves" in err


def test_reject_in_a_store_and_unknown_versions(store, capsys):
    code, out, err = run(
        capsys, "--store", str(store.root), "--model-version", "1", "--reject", "--reason", "no"
    )
    assert code == 0, err
    record = registry.version(store.registry, GROUP, 1)
    assert record["ModelApprovalStatus"] == "Rejected" and record["ApprovalDescription"] == "no"
    assert not store.endpoints.exists() or not list(store.endpoints.iterdir())

    code, out, err = run(capsys, "--store", str(store.root), "--model-version", "9")
    assert code == 2
    assert f"model package group {GROUP} has no version 9 (versions: 1, 2)" in one_error_line(err)


def test_a_store_endpoint_of_another_naming_is_not_replaced(store, capsys):
    endpoints.create_model(
        store,
        "theirs",
        {"PrimaryContainer": {"ModelDataUrl": "s3://bucket/executions/a/model.tar.gz"}},
    )
    endpoints.create_endpoint_config(
        store, "hand-made", {"ProductionVariants": [{"ModelName": "theirs"}]}
    )
    endpoints.deploy(store, ENDPOINT, "hand-made", create=True)
    code, out, err = run(capsys, "--store", str(store.root), "--model-version", "2")
    assert code == 2
    assert "which this pipeline did not create" in one_error_line(err)
    assert registry.version(store.registry, GROUP, 2)["ModelApprovalStatus"] == (
        "PendingManualApproval"
    )


def test_approve_in_a_store_records_the_instance_type_and_keeps_it_on_the_next(store, capsys):
    argv = ["--store", str(store.root), "--model-version", "1", "--instance-type", "ml.c5.2xlarge"]
    assert run(capsys, *argv)[0] == 0
    code, out, err = run(
        capsys, "--store", str(store.root), "--model-version", "2", "--bake-seconds", "0"
    )
    assert code == 0, err
    endpoint = json.loads((store.endpoints / f"{ENDPOINT}.json").read_text())
    assert endpoint["ModelDataUrl"] == "s3://bucket/executions/b/model.tar.gz"
    assert endpoint["InstanceType"] == "ml.c5.2xlarge"
    assert (
        endpoint["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] == 0
    )


def test_rejecting_the_serving_version_says_so_and_offers_the_rollback(pipeline, capsys):
    first, second = "s3://bucket/executions/a/model.tar.gz", "s3://bucket/executions/b/model.tar.gz"
    register(first)
    register(second)
    assert run(capsys, "--model-version", "1", "--no-deploy")[0] == 0
    code, _, err = run(capsys, "--model-version", "2", "--reject")
    assert code == 0, err
    # Not serving: nothing to say beyond the rejection.
    assert "serves" not in err
    assert run(capsys, "--model-version", "2")[0] == 0  # approved again and deployed
    assert serving() == second

    code, out, err = run(capsys, "--model-version", "2", "--reject", "--reason", "complaints")
    assert code == 0, err
    assert out.strip() == arn_of(2) and status_of(2) == "Rejected"
    assert (
        f"version 2 is what endpoint {ENDPOINT} serves, and rejecting it does not take it off: "
        "roll back to version 1, the newest Approved one before it, with `dogbreed-pipeline "
        "approve --model-version 1`" in " ".join(err.split())
    )
    assert serving() == second  # rejecting changes the registry, not the endpoint

    # With no earlier Approved version, the way out is teardown.
    client = sagemaker()
    client.update_model_package(ModelPackageArn=arn_of(1), ModelApprovalStatus="Rejected")
    code, _, err = run(capsys, "--model-version", "2", "--reject")
    assert "there is no earlier Approved version to roll back to" in " ".join(err.split())


def test_status_names_the_version_the_endpoint_serves(pipeline, capsys):
    from helpers.awsfakes import steps_response

    cli.main(["start"])
    capsys.readouterr()
    pipeline.stubs["ListPipelineExecutionSteps"] = steps_response()
    code, out, err = cli.main(["status"]), *capsys.readouterr()
    assert code == 0, err
    assert f"Serving    endpoint {ENDPOINT} does not exist" in out.splitlines()

    register("s3://bucket/executions/a/model.tar.gz")
    run(capsys, "--model-version", "1")
    code, out, err = cli.main(["status"]), *capsys.readouterr()
    assert code == 0, err
    (line,) = [line for line in out.splitlines() if line.startswith("Serving")]
    assert line.startswith(
        f"Serving    endpoint {ENDPOINT} (InService) serves {GROUP} version 1 (Approved), "
        f"configuration {ENDPOINT}-v1at"
    )
