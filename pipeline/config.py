"""One settings object for everything that is fixed when the pipeline is built.

What users change per execution lives in pipeline/parameters.py as Pipeline parameters;
what changes the definition itself (names, account-specific ARNs, versions) lives here.
The defaults are placeholders that make `export` work offline and deterministically:
`upsert` and `export` both take --role-arn, --bucket and --region to render a real one.
"""

from __future__ import annotations

import dataclasses
import re

# The name rules the deploy job (scripts/) and the host share: defined once, in the contract.
from dogbreed_jobs.contract import (  # noqa: F401 - re-exported for the host's modules
    CONFIG_NAME_SEPARATOR,
    alarm_names,
    is_pipeline_config,
)

# AWS documentation's example account: the committed definition must name no real account.
PLACEHOLDER_ACCOUNT = "111122223333"

ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
BUCKET_RE = re.compile(r"^(?!xn--)(?!.*-s3alias$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$")
# What SageMaker's KmsKeyId fields accept: a key ID, a key ARN, an alias name or an alias ARN.
KMS_KEY_RE = re.compile(
    r"^(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[0-9a-f-]{36}|alias/[\w/-]+)"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|alias/[\w/-]+)$"
)
# A SageMaker managed MLflow tracking server's or MLflow App's ARN (botocore's MlflowAppArn
# and TrackingServerArn shapes; names follow SageMaker's rule). The jobs use it as their
# MLFLOW_TRACKING_URI, which sagemaker-mlflow signs with SigV4.
MLFLOW_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:(?P<region>[a-z0-9-]+):\d{12}:"
    r"(?:mlflow-tracking-server|mlflow-app)/[a-zA-Z0-9](?:-*[a-zA-Z0-9]){0,255}$"
)
SUBNET_RE = re.compile(r"^subnet-[0-9a-f]{8,17}$")
SECURITY_GROUP_RE = re.compile(r"^sg-[0-9a-f]{8,17}$")
# SageMaker's rule for endpoint names; it also keeps a name from leaving <store>/endpoints/.
# The EndpointInstanceType parameter's default, and what a local approval records without one:
# the vCPUs of the former ml.m5.xlarge on a 4th-generation Xeon, whose AMX computes bf16 natively
# (serving_speed's `auto` serves bf16 there), without costing more (README, "Serving modes").
DEFAULT_ENDPOINT_INSTANCE_TYPE = "ml.c7i.xlarge"
ENDPOINT_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# EventBridge Scheduler's rule for schedule names.
SCHEDULE_NAME_RE = re.compile(r"^[0-9a-zA-Z_.-]{1,64}$")

# The default images: AWS Deep Learning Containers (aws/deep-learning-containers,
# docs/src/data/, where each image's end-of-patch date is). The instance types are pipeline
# parameters, resolved only at run time, so the CPU/GPU variant is fixed per kind of step:
# tuning and training on a GPU, processing on a CPU, serving on a CPU (the default endpoint).
# Training and processing: the AL2023 `pytorch` SageMaker images, torch 2.13.0, Python 3.12,
# patched until 2027-07-20. The SDK v2 knows no PyTorch training image past 2.8, so these are
# named here; the registry comes from the SDK (pipeline.definition.dlc_registry).
# Serving: AWS's Ray Serve DLC for SageMaker (docker/ray/; Amazon Linux 2023, security
# upgrades at every build, Python 3.13, ray[serve] 2.57.0, torch 2.10.0), its CPU image for a
# CPU endpoint, its CUDA image for a GPU one; `--serving torchserve` keeps the PyTorch 2.6
# inference DLC under TorchServe, which the SDK names (image_uris.retrieve): no PyTorch
# inference DLC after 2.6 exists, and 2.6's patches ended 2026-06-30.
DLC_IMAGES = {
    "training": "pytorch:2.13.0-cu133-amzn2023-sagemaker",
    "processing": "pytorch:2.13.0-cpu-amzn2023-sagemaker",
    "ray-cpu": "ray:serve-ml-sagemaker-cpu-v1",
    "ray-gpu": "ray:serve-ml-sagemaker-cuda-v1",
}
# The endpoint's serving stack: `ray` serves the Ray Serve application packed in
# model.tar.gz (config.yaml), `torchserve` the handlers under the PyTorch inference toolkit.
SERVING_STACKS = ("ray", "torchserve")
# The production variant's host AMI for the Ray CUDA image: the default SageMaker host AMI's
# NVIDIA driver is too old for it (aws/deep-learning-containers docs/ray/deployment/
# sagemaker.md names this version; botocore's ProductionVariantInferenceAmiVersion lists it).
RAY_GPU_INFERENCE_AMI = "al2-ami-sagemaker-inference-gpu-3-1"
# A GPU endpoint's EndpointInstanceType default (--gpu-endpoint); any GPU type also gives the
# SDK's `-gpu-` PyTorch inference image (--serving torchserve --gpu-endpoint).
GPU_IMAGE_INSTANCE_TYPE = "ml.g5.xlarge"
TRAINING_FRAMEWORK_VERSION = "2.13"
TRAINING_PY_VERSION = "py312"
INFERENCE_FRAMEWORK_VERSION = "2.6.0"
INFERENCE_PY_VERSION = "py312"
# The torch of the Ray Serve DLC (its docker/ray/pyproject.toml), which loads the weights.
RAY_TORCH_VERSION = "2.10.0"
# Any CPU instance type gives the SDK's `-cpu-` inference image; this is the endpoint's default.
INFERENCE_IMAGE_INSTANCE_TYPE = DEFAULT_ENDPOINT_INSTANCE_TYPE
# What CreateTrainingJob, CreateProcessingJob and CreateModel can pull without a registry
# configuration of their own: an ECR repository (lower case, `/`-separated) with a tag or digest.
ECR_IMAGE_RE = re.compile(
    r"^\d{12}\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.(?P<domain>amazonaws\.com(?:\.cn)?)"
    r"/[a-z0-9]+(?:[._/-][a-z0-9]+)*"
    r"(?P<reference>:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})?$"
)

# How TrainModel is debugged (README, "SageMaker Debugger: three modes"): `service` attaches
# SageMaker Debugger (hook config, built-in rules, profiler), which AWS closed to new customers
# on 2026-07-30; `pipeline` configures no Debugger at all: train.py registers the smdebug hook
# itself and a CheckTrainingRules processing step runs the same rules; `off` drops both.
DEBUGGER_MODES = ("service", "pipeline", "off")

# run-local's S3, registry, endpoints and records, relative to the working directory.
LOCAL_STORE = "local-store"
# The EndpointName parameter's default: the endpoint the pipeline deploys.
DEFAULT_ENDPOINT_NAME = "dogbreed-classifier"

# The longest endpoint configuration name approve may make (SageMaker's limit).
MAX_CONFIG_NAME = 63


def approval_config_name(endpoint_name: str, version: int, unix_time: int) -> str:
    """The configuration `approve` deploys `version` with; ValueError if too long a name."""
    name = f"{endpoint_name}{CONFIG_NAME_SEPARATOR}v{version}at{unix_time}"
    if len(name) > MAX_CONFIG_NAME:
        raise ValueError(
            f"endpoint name {endpoint_name} is too long to name its configurations "
            f"({name} has more than {MAX_CONFIG_NAME} characters)"
        )
    return name


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    pipeline_name: str = "dogbreed-pipeline"
    region: str = "us-east-1"
    bucket: str = f"dogbreed-pipeline-{PLACEHOLDER_ACCOUNT}"
    prefix: str = "dogbreed-pipeline"
    role_arn: str = f"arn:aws:iam::{PLACEHOLDER_ACCOUNT}:role/DogbreedPipelineExecutionRole"
    model_package_group: str = "dogbreed-classifier"
    # Container images, one per kind of step (README, "Images"); empty: the AWS Deep Learning
    # Container of DLC_IMAGES in the region's DLC registry. Set, an ECR image URI of this
    # region with a tag or digest (SageMaker pulls from the job's own region).
    training_image: str = ""
    processing_image: str = ""
    inference_image: str = ""
    # One of SERVING_STACKS; `ray` is the committed definition's.
    serving: str = "ray"
    # The endpoint serves on a GPU instance type: the GPU serving image (and, under Ray, its
    # host AMI), and EndpointInstanceType defaults to GPU_IMAGE_INSTANCE_TYPE.
    gpu_endpoint: bool = False
    # One of DEBUGGER_MODES; `service` is the committed definition's.
    debugger: str = "service"
    enable_caching: bool = True
    cache_expire_after: str = "P30D"
    # Security options (infra/dogbreed-pipeline.yaml creates the key and the roles). All off by
    # default so the committed definition stays the one every account can import.
    # Encrypts the jobs' ML volumes and outputs and the endpoint's storage volume.
    kms_key_id: str = ""
    # No network for the training, tuning and processing containers: training then needs
    # pretrained=false or ImageNet weights given through its 'weights' channel.
    enable_network_isolation: bool = False
    # The jobs and the model run in these subnets (both lists are needed, or neither).
    subnets: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    # TLS between the instances of a distributed training job (costs training time).
    encrypt_inter_container_traffic: bool = False
    # Managed spot capacity for the tuning trials and TrainModel (up to ~70% cheaper; a job
    # may wait for capacity and be interrupted: TrainModel resumes from its checkpoints).
    use_spot: bool = False
    # MLflow (README, Experiment tracking): the tuning trials, TrainModel and EvaluateModel log
    # to this SageMaker MLflow tracking server or MLflow App, the default of the
    # MlflowTrackingUri parameter. Empty: no tracking, and the definition says nothing of it.
    mlflow_tracking_arn: str = ""

    def __post_init__(self):
        problems = []
        if not ROLE_ARN_RE.match(self.role_arn):
            problems.append(
                f"role ARN {self.role_arn!r} is not an IAM role ARN "
                "(expected arn:aws:iam::<12-digit account>:role/<name>)"
            )
        if not BUCKET_RE.match(self.bucket) or ".." in self.bucket:
            problems.append(f"bucket {self.bucket!r} is not a valid S3 bucket name")
        if not REGION_RE.match(self.region):
            problems.append(f"region {self.region!r} is not an AWS region name such as us-east-1")
        if not NAME_RE.match(self.pipeline_name):
            problems.append(
                f"pipeline name {self.pipeline_name!r} may hold only letters, digits and hyphens"
            )
        if not NAME_RE.match(self.model_package_group):
            problems.append(
                f"model package group {self.model_package_group!r} may hold only letters, "
                "digits and hyphens"
            )
        if self.prefix != self.prefix.strip("/") or not self.prefix:
            problems.append(f"prefix {self.prefix!r} must be non-empty without leading/trailing /")
        if self.debugger not in DEBUGGER_MODES:
            problems.append(
                f"debugger mode {self.debugger!r} is not one of {', '.join(DEBUGGER_MODES)}"
            )
        if self.serving not in SERVING_STACKS:
            problems.append(
                f"serving stack {self.serving!r} is not one of {', '.join(SERVING_STACKS)}"
            )
        problems.extend(self._security_problems())
        problems.extend(self._image_problems())
        problems.extend(self._tracking_problems())
        if problems:
            raise ValueError("; ".join(problems))

    def _security_problems(self) -> list[str]:
        problems = []
        if self.kms_key_id and not KMS_KEY_RE.match(self.kms_key_id):
            problems.append(
                f"KMS key {self.kms_key_id!r} is not a key ID, key ARN, alias/<name> or alias ARN"
            )
        problems.extend(
            f"subnet {s!r} is not a subnet ID such as subnet-0123abcd"
            for s in self.subnets
            if not SUBNET_RE.match(s)
        )
        problems.extend(
            f"security group {g!r} is not a security group ID such as sg-0123abcd"
            for g in self.security_group_ids
            if not SECURITY_GROUP_RE.match(g)
        )
        # SageMaker rejects a VpcConfig that lacks either list.
        if bool(self.subnets) != bool(self.security_group_ids):
            problems.append("subnets and security groups must be given together")
        return problems

    def _image_problems(self) -> list[str]:
        problems = []
        for kind in ("training", "processing", "inference"):
            uri = getattr(self, f"{kind}_image")
            if not uri:
                continue
            what = f"{kind} image {uri!r}"
            image = ECR_IMAGE_RE.match(uri)
            if not image:
                problems.append(
                    f"{what} is not an ECR image URI "
                    "(<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>)"
                )
            elif not image["reference"]:
                # Without one, every job would pull whatever `latest` is that day.
                problems.append(f"{what} needs a :tag or @sha256:digest")
            elif image["region"] != self.region:
                problems.append(
                    f"{what} is in region {image['region']}, the pipeline in {self.region}: "
                    "SageMaker pulls images from the job's own region"
                )
            elif (image["domain"] == "amazonaws.com.cn") != self.region.startswith("cn-"):
                domain = "amazonaws.com.cn" if self.region.startswith("cn-") else "amazonaws.com"
                problems.append(f"{what}: ECR's domain in {self.region} is {domain}")
        return problems

    def _tracking_problems(self) -> list[str]:
        arn = self.mlflow_tracking_arn
        if not arn:
            return []
        match = MLFLOW_ARN_RE.match(arn)
        if not match:
            return [
                f"MLflow tracking ARN {arn!r} is not a SageMaker MLflow tracking server or "
                "MLflow App ARN (arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/"
                "<name> or ...:mlflow-app/<id>)"
            ]
        if match["region"] != self.region:
            return [
                f"MLflow tracking ARN {arn!r} is in region {match['region']}, the pipeline "
                f"in {self.region}"
            ]
        if self.enable_network_isolation:
            return ["MLflow tracking needs the jobs' network: drop --network-isolation"]
        return []

    @property
    def vpc_config(self) -> dict | None:
        """The VpcConfig of jobs and models, None when they run outside a VPC."""
        if not self.subnets:
            return None
        return {"Subnets": list(self.subnets), "SecurityGroupIds": list(self.security_group_ids)}

    @property
    def inference_ami_version(self) -> str | None:
        """The endpoint's InferenceAmiVersion: the Ray CUDA image's, else the default AMI.

        A user's own image (--inference-image) is theirs to match with an AMI."""
        if self.gpu_endpoint and self.serving == "ray" and not self.inference_image:
            return RAY_GPU_INFERENCE_AMI
        return None

    @property
    def account(self) -> str:
        return self.role_arn.split(":")[4]

    def s3_uri(self, *parts: str) -> str:
        return "s3://" + "/".join([self.bucket, self.prefix, *parts])

    def replace(self, **changes) -> PipelineConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
