"""dogbreed_jobs.release: the DeployEndpoint job's blue/green release, on AWS and locally.

On AWS: moto holds the CloudWatch alarms and Application Auto Scaling's targets and
policies; SageMaker is a botocore Stubber with SageMaker's documented answers, because moto
lacks UpdateEndpoint and never changes an endpoint's status (Updating -> InService on the
new configuration; RollingBack -> InService on the old one). Locally: the same code through
run-local's API, whose store bakes and rolls back by the same rules.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import boto3
import pytest
from botocore.stub import Stubber
from helpers.awsfakes import REGION, put_alarms

from dogbreed_jobs import release
from dogbreed_jobs.release import Clients, Release, read_scaling
from pipeline import cli
from pipeline.config import alarm_names
from pipeline.local import alarms, endpoints, sagemaker_api
from pipeline.local.store import Store

ENDPOINT = "dogbreed-classifier"
OLD, NEW = f"{ENDPOINT}-0a1b2c3d4e5f", f"{ENDPOINT}-9f8e7d6c5b4a"
ALARMS = tuple(alarm_names(ENDPOINT))
T0 = dt.datetime(2026, 12, 6, 10, 0, tzinfo=dt.timezone.utc)
ASKED = Release(
    endpoint_name=ENDPOINT,
    config_name=NEW,
    model_name="pipelines-9f8e7d6c5b4a-createmodel-abc",
    instance_type="ml.c7i.xlarge",
    alarms=ALARMS,
    instance_count=1,
    min_instances=1,
    max_instances=4,
    invocations_target=375.0,
    bake_seconds=600,
)


def described(config: str, status: str, desired: int = 1, **extra) -> dict:
    """DescribeEndpoint's answer (SageMaker API reference's shape)."""
    return {
        "EndpointName": ENDPOINT,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{ENDPOINT}",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": T0,
        "LastModifiedTime": T0,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "CurrentWeight": 1.0,
                "DesiredWeight": 1.0,
                "CurrentInstanceCount": desired,
                "DesiredInstanceCount": desired,
            }
        ],
        **extra,
    }


def config_of(name: str, instance_type: str = "ml.c7i.xlarge") -> dict:
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint-config/{name}",
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": "pipelines-0a1b2c3d4e5f-createmodel-abc",
                "InitialInstanceCount": 1,
                "InstanceType": instance_type,
            }
        ],
        "CreationTime": T0,
    }


@pytest.fixture
def aws(moto, monkeypatch):
    """(clients, stubber of SageMaker): moto's CloudWatch (the alarms in OK) and Application
    Auto Scaling, a stubbed SageMaker; no pause between polls."""
    monkeypatch.setattr(release.time, "sleep", lambda seconds: None)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    put_alarms(cloudwatch, ALARMS)
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    clients = Clients(sagemaker, cloudwatch, boto3.client("application-autoscaling", REGION))
    with Stubber(sagemaker) as stubber:
        yield clients, stubber
        stubber.assert_no_pending_responses()


def expect_update(stubber, *, desired: int, served_type: str = "ml.c7i.xlarge") -> None:
    """The calls of an update up to UpdateEndpoint, with the requests SageMaker must get."""
    stubber.add_response(
        "describe_endpoint", described(OLD, "InService", desired), {"EndpointName": ENDPOINT}
    )
    stubber.add_client_error(
        "describe_endpoint_config",
        "ValidationException",
        f'Could not find endpoint configuration "{NEW}".',
        expected_params={"EndpointConfigName": NEW},
    )
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": ASKED.model_name,
        "InitialInstanceCount": desired,
        "InstanceType": "ml.c7i.xlarge",
        "InitialVariantWeight": 1.0,
    }
    stubber.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": config_of(NEW)["EndpointConfigArn"]},
        {"EndpointConfigName": NEW, "ProductionVariants": [variant]},
    )
    stubber.add_response(
        "describe_endpoint_config", config_of(OLD, served_type), {"EndpointConfigName": OLD}
    )
    stubber.add_response(
        "update_endpoint",
        {"EndpointArn": described(NEW, "Creating")["EndpointArn"]},
        {
            "EndpointName": ENDPOINT,
            "EndpointConfigName": NEW,
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "ALL_AT_ONCE",
                        "WaitIntervalInSeconds": 600,
                    },
                    "TerminationWaitInSeconds": 600,
                    "MaximumExecutionTimeoutInSeconds": 3000,
                },
                "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": a} for a in ALARMS]},
            },
        },
    )


def test_an_update_is_blue_green_with_the_alarms_then_scales_the_new_fleet(aws):
    clients, stubber = aws
    # Autoscaling had grown the fleet to 3: the new fleet starts with 3, not 1.
    expect_update(stubber, desired=3)
    stubber.add_response("describe_endpoint", described(OLD, "Updating", 3))
    stubber.add_response("describe_endpoint", described(NEW, "InService", 3))
    outcome = release.release(clients, ASKED)
    assert (outcome.action, outcome.config, outcome.instance_count) == ("updated", NEW, 3)
    assert outcome.scaling == {"min": 1, "max": 4, "target": 375.0}
    target, (policy,) = read_scaling(clients.autoscaling, ENDPOINT)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    assert policy["PolicyName"] == f"{ENDPOINT}-invocations-per-instance"


def test_a_rollback_on_an_alarm_fails_in_one_line_naming_it(aws):
    clients, stubber = aws
    expect_update(stubber, desired=1)

    def the_new_fleet_errs(**kwargs):
        clients.cloudwatch.set_alarm_state(
            AlarmName=ALARMS[0], StateValue="ALARM", StateReason="Threshold Crossed"
        )

    clients.sagemaker.meta.events.register(
        "after-call.sagemaker.UpdateEndpoint", the_new_fleet_errs
    )
    stubber.add_response("describe_endpoint", described(OLD, "Updating"))
    stubber.add_response("describe_endpoint", described(OLD, "RollingBack"))
    reason = "Endpoint update was rolled back: an auto-rollback alarm went into ALARM."
    stubber.add_response("describe_endpoint", described(OLD, "InService", FailureReason=reason))
    with pytest.raises(release.ReleaseFailed) as failed:
        release.release(clients, ASKED)
    message = str(failed.value)
    assert message == (
        f"endpoint {ENDPOINT} rolled back to {OLD}: alarm {ALARMS[0]} (ALARM) fired during the "
        f"update to {NEW} ({reason})"
    )
    # Nothing was scaled for a fleet that is gone.
    assert read_scaling(clients.autoscaling, ENDPOINT) == (None, [])


def test_an_alarm_that_fired_and_recovered_during_the_bake_is_still_named(aws):
    clients, stubber = aws
    expect_update(stubber, desired=1)

    def fired_and_recovered(**kwargs):
        for state in ("ALARM", "OK"):
            clients.cloudwatch.set_alarm_state(
                AlarmName=ALARMS[1], StateValue=state, StateReason="p99 spike"
            )

    clients.sagemaker.meta.events.register(
        "after-call.sagemaker.UpdateEndpoint", fired_and_recovered
    )
    stubber.add_response("describe_endpoint", described(OLD, "RollingBack"))
    stubber.add_response("describe_endpoint", described(OLD, "InService"))
    with pytest.raises(release.ReleaseFailed, match=rf"alarm {ALARMS[1]} \(OK\) fired"):
        release.release(clients, ASKED)


def test_a_new_instance_type_takes_scaling_off_first_and_a_rollback_puts_it_back(aws):
    clients, stubber = aws
    key = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{ENDPOINT}/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    clients.autoscaling.register_scalable_target(**key, MinCapacity=2, MaxCapacity=6)
    clients.autoscaling.put_scaling_policy(
        PolicyName="theirs",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 100.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
        },
        **key,
    )
    seen = []
    clients.sagemaker.meta.events.register(
        "before-parameter-build.sagemaker.UpdateEndpoint",
        lambda **kwargs: seen.append(read_scaling(clients.autoscaling, ENDPOINT)),
    )
    expect_update(stubber, desired=2, served_type="ml.m5.xlarge")
    stubber.add_response("describe_endpoint", described(OLD, "InService", 2, FailureReason="x"))
    with pytest.raises(release.ReleaseFailed, match=f"rolled back to {OLD}: no alarm fired"):
        release.release(clients, ASKED)
    # AWS refuses an instance-type change of an autoscaled variant: it was unscaled first...
    assert seen == [(None, [])]
    # ...and the old fleet, which stays, got its scaling back.
    target, (policy,) = read_scaling(clients.autoscaling, ENDPOINT)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 6)
    assert policy["PolicyName"] == "theirs"
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 100.0


def test_a_retry_after_success_changes_nothing_but_the_scaling(aws):
    clients, stubber = aws
    stubber.add_response("describe_endpoint", described(NEW, "InService", 2))
    fixed = Release(
        **{**ASKED.__dict__, "min_instances": 2, "instance_count": 2, "max_instances": 2}
    )
    outcome = release.release(clients, fixed)
    assert (outcome.action, outcome.instance_count, outcome.scaling) == ("already serving", 2, None)


def test_a_retry_during_the_update_it_started_waits_for_it(aws):
    clients, stubber = aws
    pending = {"PendingDeploymentSummary": {"EndpointConfigName": NEW}}
    stubber.add_response("describe_endpoint", described(OLD, "Updating", **pending))
    stubber.add_response("describe_endpoint", described(NEW, "InService"))
    assert release.release(clients, ASKED).action == "updated"


def test_a_first_deployment_creates_the_endpoint_without_a_deployment_config(aws):
    clients, stubber = aws
    stubber.add_client_error(
        "describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT}".'
    )
    stubber.add_client_error(
        "describe_endpoint_config", "ValidationException", "Could not find endpoint configuration"
    )
    stubber.add_response(
        "create_endpoint_config", {"EndpointConfigArn": config_of(NEW)["EndpointConfigArn"]}, None
    )
    stubber.add_response(
        "create_endpoint",
        {"EndpointArn": described(NEW, "Creating")["EndpointArn"]},
        {"EndpointName": ENDPOINT, "EndpointConfigName": NEW},
    )
    stubber.add_response("describe_endpoint", described(NEW, "Creating"))
    stubber.add_response("describe_endpoint", described(NEW, "InService"))
    assert release.release(clients, ASKED).action == "created"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"min_instances": 2}, "minimum 2, count 1, maximum 4: they must satisfy"),
        ({"instance_count": 5}, "minimum 1, count 5, maximum 4"),
        ({"bake_seconds": 3601}, "bake of 3601s: SageMaker allows 0 to 3600 seconds"),
        ({"alarms": ()}, "0 auto-rollback alarms: SageMaker takes 1 to 10"),
        ({"config_name": "hand-made"}, "configuration name 'hand-made' is not of the pipeline's"),
        ({"alarms": ("missing-alarm",)}, "alarm missing-alarm does not exist: deploy the stack in"),
    ],
)
def test_bad_requests_are_refused_before_anything_changes(aws, change, words):
    clients, stubber = aws
    if "alarms" in change and change["alarms"]:
        stubber.add_response("describe_endpoint", described(OLD, "InService"))
    with pytest.raises(release.Refused, match=words):
        release.release(clients, Release(**{**ASKED.__dict__, **change}))


@pytest.mark.parametrize(
    ("state", "words"),
    [
        (described(OLD, "Failed", FailureReason="capacity"), "is Failed (capacity)"),
        (described(OLD, "Updating"), "is Updating: deploy again once it is InService"),
        (described("hand-made", "InService"), "serves configuration 'hand-made', which this"),
    ],
)
def test_an_endpoint_that_cannot_take_the_update_is_refused(aws, state, words):
    clients, stubber = aws
    stubber.add_response("describe_endpoint", state)
    with pytest.raises(release.Refused) as refused:
        release.release(clients, ASKED)
    assert words in str(refused.value) and "\n" not in str(refused.value)


def test_an_alarm_already_firing_refuses_the_update(aws):
    clients, stubber = aws
    clients.cloudwatch.set_alarm_state(AlarmName=ALARMS[0], StateValue="ALARM", StateReason="5xx")
    stubber.add_response("describe_endpoint", described(OLD, "InService"))
    with pytest.raises(release.Refused, match=f"alarm {ALARMS[0]} is in ALARM on the serving"):
        release.release(clients, ASKED)


def test_the_job_writes_its_outcome_and_fails_in_one_line(aws, tmp_path, monkeypatch, capsys):
    clients, stubber = aws
    monkeypatch.setattr(release, "clients_for", lambda region: clients)
    argv = ["--endpoint-name", ENDPOINT, "--config-name", NEW, "--model-name", "m",
            "--instance-type", "ml.c7i.xlarge", "--alarm", ALARMS[0], "--alarm", ALARMS[1],
            "--region", REGION, "--output-dir", str(tmp_path)]  # fmt: skip
    stubber.add_response("describe_endpoint", described(NEW, "InService"))
    assert release.main(argv) == 0
    report = json.loads((tmp_path / "release.json").read_text())
    assert report == {
        "action": "already serving",
        "config": NEW,
        "endpoint": ENDPOINT,
        "instance_count": 1,
        "scaling": None,
    }
    assert capsys.readouterr().out == (
        f"endpoint {ENDPOINT} already serving on {NEW}: 1 instance(s), fixed\n"
    )
    stubber.add_response("describe_endpoint", described(OLD, "Failed", FailureReason="boom"))
    assert release.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"endpoint {ENDPOINT} is Failed (boom)" in err


# ------------------------------------------------------------------------------ locally


@pytest.fixture
def local(tmp_path):
    """run-local's API over a store with two models and the endpoint's alarms (in OK)."""
    store = Store(tmp_path / "store")
    for tag in ("a", "b"):
        url = f"s3://bucket/{tag}/model.tar.gz"
        store.put_bytes(url, b"a model")
        endpoints.create_model(store, f"model-{tag}", {"PrimaryContainer": {"ModelDataUrl": url}})
    assert alarms.ensure(store, ENDPOINT, list(ALARMS)) == list(ALARMS)
    with sagemaker_api.connected(store) as clients:
        yield store, clients


def local_release(config: str, model: str, bake: int = 1) -> Release:
    return Release(**{**ASKED.__dict__, "config_name": config, "model_name": model,
                      "bake_seconds": bake, "max_instances": 3})  # fmt: skip


def test_locally_an_alarm_in_the_bake_rolls_back_and_says_which(local):
    store, clients = local
    assert release.release(clients, local_release(OLD, "model-a")).action == "created"

    def fire_during_the_bake():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            endpoint = clients.sagemaker.describe_endpoint(EndpointName=ENDPOINT)
            if endpoint["EndpointStatus"] == "Updating":
                clients.cloudwatch.set_alarm_state(
                    AlarmName=ALARMS[1], StateValue="ALARM", StateReason="p99 3 s"
                )
                return
            time.sleep(0.05)

    firing = threading.Thread(target=fire_during_the_bake)
    firing.start()
    with pytest.raises(release.ReleaseFailed) as failed:
        release.release(clients, local_release(NEW, "model-b", bake=2))
    firing.join()
    assert f"rolled back to {OLD}: alarm {ALARMS[1]} (ALARM) fired" in str(failed.value)
    record = json.loads((store.endpoints / f"{ENDPOINT}.json").read_text())
    # serve-local goes on serving the old model.
    assert record["EndpointConfigName"] == OLD and record["ModelName"] == "model-a"
    assert record["EndpointStatus"] == "InService" and ALARMS[1] in record["FailureReason"]
    deployment = record["LastDeploymentConfig"]
    assert deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == (
        "ALL_AT_ONCE"
    )
    # Once the alarm is OK again, the same release goes through.
    clients.cloudwatch.set_alarm_state(AlarmName=ALARMS[1], StateValue="OK", StateReason="ok")
    outcome = release.release(clients, local_release(NEW, "model-b", bake=0))
    assert (outcome.action, outcome.scaling) == ("updated", {"min": 1, "max": 3, "target": 375.0})
    record = json.loads((store.endpoints / f"{ENDPOINT}.json").read_text())
    assert record["ModelName"] == "model-b" and "FailureReason" not in record


def test_locally_a_missing_alarm_is_refused_naming_it(local):
    store, clients = local
    (store.root / "alarms" / f"{ALARMS[0]}.json").unlink()
    with pytest.raises(release.Refused, match=f"alarm {ALARMS[0]} does not exist"):
        release.release(clients, local_release(OLD, "model-a"))
    assert not store.endpoints.exists() or not list(store.endpoints.iterdir())


def test_teardown_in_a_store_removes_the_scaling_and_keeps_the_alarms(local, capsys):
    store, clients = local
    release.release(clients, local_release(OLD, "model-a"))
    assert read_scaling(clients.autoscaling, ENDPOINT)[0] is not None
    code = cli.main(["teardown", "--yes", "--store", str(store.root)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"scaling policy {ENDPOINT}-invocations-per-instance" in err
    assert f"removed scalable target endpoint/{ENDPOINT}/variant/AllTraffic" in err
    assert read_scaling(clients.autoscaling, ENDPOINT) == (None, [])
    assert [a["AlarmName"] for a in alarms.describe(store, ALARMS)] == list(ALARMS)


def test_the_local_api_answers_in_each_service_s_protocol(local):
    store, clients = local
    with pytest.raises(clients.cloudwatch.exceptions.ResourceNotFound):
        clients.cloudwatch.set_alarm_state(AlarmName="nope", StateValue="ALARM", StateReason="x")
    with pytest.raises(clients.autoscaling.exceptions.ObjectNotFoundException):
        clients.autoscaling.deregister_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=f"endpoint/{ENDPOINT}/variant/AllTraffic",
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        )
    # A target needs its endpoint, as SageMaker's variant must exist.
    with pytest.raises(clients.autoscaling.exceptions.ValidationException, match="endpoint"):
        clients.autoscaling.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=f"endpoint/{ENDPOINT}/variant/AllTraffic",
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            MinCapacity=1,
            MaxCapacity=2,
        )
