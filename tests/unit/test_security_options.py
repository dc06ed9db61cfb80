"""The security options of PipelineConfig (and their CLI flags) land in the right fields.

Each option is checked in the exported definition, the document SageMaker receives, on every
job type it applies to; and the defaults must add none of these fields, so the committed
definition stays the same for users who set nothing.
"""

from __future__ import annotations

import pytest
from helpers.definitions import step

from pipeline import cli
from pipeline.cli import options
from pipeline.config import PipelineConfig
from pipeline.definition import definition_dict
from pipeline.errors import UsageError

KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SUBNETS = ("subnet-0123456789abcdef0", "subnet-0fedcba9876543210")
GROUPS = ("sg-0123456789abcdef0",)
VPC = {"Subnets": list(SUBNETS), "SecurityGroupIds": list(GROUPS)}
SECURITY_FIELDS = {
    "KmsKeyId",
    "VolumeKmsKeyId",
    "NetworkConfig",
    "VpcConfig",
    "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption",
}
JOBS = ("PrepareData", "TuneHyperparameters", "TrainModel", "EvaluateModel")


def arguments(definition: dict, name: str) -> dict:
    return step(definition, name)["Arguments"]


def training_job(definition: dict, name: str) -> dict:
    """A training job's request: the TrainModel arguments or the tuning job's template."""
    args = arguments(definition, name)
    return args["TrainingJobDefinition"] if name == "TuneHyperparameters" else args


def keys(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys(item)


@pytest.fixture(scope="module")
def default() -> dict:
    return definition_dict(PipelineConfig())


@pytest.fixture(scope="module")
def secured() -> dict:
    return definition_dict(
        PipelineConfig(
            kms_key_id=KEY,
            subnets=SUBNETS,
            security_group_ids=GROUPS,
            enable_network_isolation=True,
            encrypt_inter_container_traffic=True,
        )
    )


def test_defaults_add_no_security_field_anywhere(default):
    assert SECURITY_FIELDS.isdisjoint(keys(default["Steps"]))


@pytest.mark.parametrize("name", ["PrepareData", "EvaluateModel"])
def test_kms_key_encrypts_processing_volumes_and_outputs(secured, name):
    args = arguments(secured, name)
    assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == KEY
    assert args["ProcessingOutputConfig"]["KmsKeyId"] == KEY


@pytest.mark.parametrize("name", ["TuneHyperparameters", "TrainModel"])
def test_kms_key_encrypts_training_and_tuning_volumes_and_outputs(secured, name):
    job = training_job(secured, name)
    # A tuning job's template names its resources HyperParameterTuningResourceConfig.
    resources = (
        "HyperParameterTuningResourceConfig"
        if name == "TuneHyperparameters"
        else ("ResourceConfig")
    )
    assert job[resources]["VolumeKmsKeyId"] == KEY
    assert job["OutputDataConfig"]["KmsKeyId"] == KEY


def test_kms_key_encrypts_the_endpoint_storage(secured):
    from pipeline.deployment import release_arguments

    assert release_arguments(arguments(secured, "DeployEndpoint"))["kms-key-id"] == KEY


@pytest.mark.parametrize("name", ["PrepareData", "EvaluateModel"])
def test_processing_jobs_get_vpc_and_isolation_in_their_network_config(secured, name):
    network = arguments(secured, name)["NetworkConfig"]
    assert network["VpcConfig"] == VPC
    assert network["EnableNetworkIsolation"] is True


def test_compare_with_deployed_keeps_vpc_and_kms_key_but_never_isolation(secured):
    """Its script calls the SageMaker API (DescribeEndpoint, ListModelPackages, ...), which a
    network-isolated container cannot reach."""
    args = arguments(secured, "CompareWithDeployed")
    assert args["NetworkConfig"]["VpcConfig"] == VPC
    assert args["NetworkConfig"]["EnableNetworkIsolation"] is False
    assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == KEY
    assert args["ProcessingOutputConfig"]["KmsKeyId"] == KEY


def test_isolation_alone_isolates_every_job_but_compare_with_deployed():
    """`export --network-isolation` without a VPC."""
    config = options.config_from(cli.build_parser().parse_args(["export", "--network-isolation"]))
    definition = definition_dict(config)
    for name in ("PrepareData", "EvaluateModel"):
        assert arguments(definition, name)["NetworkConfig"]["EnableNetworkIsolation"] is True
    for name in ("TuneHyperparameters", "TrainModel"):
        assert training_job(definition, name)["EnableNetworkIsolation"] is True
    assert "NetworkConfig" not in arguments(definition, "CompareWithDeployed")


@pytest.mark.parametrize("name", ["TuneHyperparameters", "TrainModel"])
def test_training_and_tuning_jobs_get_vpc_isolation_and_inter_container_encryption(secured, name):
    job = training_job(secured, name)
    assert job["VpcConfig"] == VPC
    assert job["EnableNetworkIsolation"] is True
    assert job["EnableInterContainerTrafficEncryption"] is True


@pytest.mark.parametrize("name", ["TuneHyperparameters", "TrainModel"])
def test_isolated_training_reads_its_code_from_a_channel_not_from_s3(secured, name):
    """An isolated container cannot fetch source_dir itself: the SDK mounts it as 'code'."""
    job = training_job(secured, name)
    channels = {c["ChannelName"] for c in job["InputDataConfig"]}
    assert "code" in channels
    submit = job["StaticHyperParameters" if name == "TuneHyperparameters" else "HyperParameters"][
        "sagemaker_submit_directory"
    ]
    assert submit.startswith('"/opt/ml/input/data/code/')


def test_model_runs_in_the_vpc(secured):
    assert arguments(secured, "CreateModel-CreateModel")["VpcConfig"] == VPC


def test_vpc_alone_does_not_isolate_or_encrypt():
    definition = definition_dict(PipelineConfig(subnets=SUBNETS, security_group_ids=GROUPS))
    for name in JOBS:
        assert "EnableNetworkIsolation" not in training_job(definition, name)
        assert "KmsKeyId" not in keys(arguments(definition, name))
    assert arguments(definition, "PrepareData")["NetworkConfig"]["EnableNetworkIsolation"] is False


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"kms_key_id": "my-key"}, "KMS key"),
        ({"subnets": ("subnet-0123abcd",)}, "together"),
        ({"security_group_ids": ("sg-0123abcd",)}, "together"),
        ({"subnets": ("vpc-0123abcd",), "security_group_ids": ("sg-0123abcd",)}, "subnet"),
        ({"subnets": ("subnet-0123abcd",), "security_group_ids": ("0123abcd",)}, "security"),
    ],
)
def test_invalid_security_settings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig(**changes)


@pytest.mark.parametrize(
    "key", [KEY, "1234abcd-12ab-34cd-56ef-1234567890ab", "alias/dogbreed-pipeline"]
)
def test_every_form_of_kms_key_sagemaker_accepts_is_accepted(key):
    assert PipelineConfig(kms_key_id=key).kms_key_id == key


@pytest.mark.parametrize("command", ["export", "upsert"])
def test_cli_flags_reach_the_config(command):
    argv = [
        command,
        "--kms-key-id",
        KEY,
        "--subnet",
        SUBNETS[0],
        "--subnet",
        SUBNETS[1],
        "--security-group",
        GROUPS[0],
        "--network-isolation",
        "--encrypt-inter-container-traffic",
    ]
    if command == "upsert":
        argv += ["--role-arn", "arn:aws:iam::111122223333:role/DogbreedPipelineExecutionRole"]
    config = options.config_from(cli.build_parser().parse_args(argv))
    assert config.kms_key_id == KEY
    assert config.subnets == SUBNETS
    assert config.security_group_ids == GROUPS
    assert config.enable_network_isolation is True
    assert config.encrypt_inter_container_traffic is True


def test_cli_without_flags_keeps_every_option_off():
    config = options.config_from(cli.build_parser().parse_args(["export"]))
    assert config == PipelineConfig()


def test_cli_reports_a_lone_subnet_as_a_usage_error():
    args = cli.build_parser().parse_args(["export", "--subnet", SUBNETS[0]])
    with pytest.raises(UsageError, match="together"):
        options.config_from(args)
