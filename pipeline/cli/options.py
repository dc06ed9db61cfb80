"""What several commands share: the parser class, option groups, their defaults, tables.

Every default a flag shows is defined once, in pipeline.config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pipeline.cli.argtypes as argtypes
from pipeline.config import DEBUGGER_MODES, LOCAL_STORE, SERVING_STACKS, PipelineConfig
from pipeline.errors import UsageError

PROG = "dogbreed-pipeline"
DEFAULTS = PipelineConfig()


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong, and where the help is."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def add_aws(parser) -> None:
    parser.add_argument("--region", help="AWS region (default: AWS_REGION or the profile's)")
    parser.add_argument("--profile", help="AWS profile (default: AWS_PROFILE)")


def add_pipeline_name(parser, what: str = "pipeline name") -> None:
    parser.add_argument(
        "--pipeline-name",
        type=argtypes.pipeline_name,
        default=DEFAULTS.pipeline_name,
        help=f"{what} (default: {DEFAULTS.pipeline_name})",
    )


def add_params(parser, example: str = "") -> None:
    parser.add_argument(
        "--param",
        type=argtypes.param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"override a pipeline parameter (repeatable){example}",
    )


def add_store(parser, what: str = "the local S3, registry, endpoints and records") -> None:
    parser.add_argument(
        "--store",
        type=Path,
        default=Path(LOCAL_STORE),
        metavar="DIR",
        help=f"{what} (default: ./{LOCAL_STORE})",
    )


def add_config(parser, role_required: bool) -> None:
    """The flags that change the definition itself (PipelineConfig), for export and upsert."""
    parser.add_argument(
        "--role-arn",
        type=argtypes.role_arn,
        required=role_required,
        help="IAM role the pipeline's jobs run as"
        + ("" if role_required else " (default: a placeholder)"),
    )
    parser.add_argument("--bucket", help="S3 bucket for code and artifacts")
    debugger = parser.add_mutually_exclusive_group()
    debugger.add_argument(
        "--debugger",
        choices=DEBUGGER_MODES,
        help="service: SageMaker Debugger's hook, rules and profiler (closed to new AWS "
        "customers); pipeline: no Debugger configuration, train.py saves the tensors and a "
        "CheckTrainingRules processing step runs the same rules; off: neither "
        f"(default: {DEFAULTS.debugger}; README, SageMaker Debugger: three modes)",
    )
    # Kept for scripts written before the modes: the same as --debugger off.
    debugger.add_argument(
        "--no-debugger", dest="debugger", action="store_const", const="off", help="--debugger off"
    )
    parser.add_argument(
        "--spot",
        action="store_true",
        help="managed spot capacity for the tuning trials and TrainModel (cheaper; TrainModel "
        "resumes from its checkpoints after an interruption)",
    )
    parser.add_argument(
        "--mlflow-tracking-arn",
        metavar="ARN",
        help="log the tuning trials, TrainModel and EvaluateModel to this SageMaker MLflow "
        "tracking server or MLflow App of the pipeline's region (the default of the "
        "MlflowTrackingUri parameter; README, Experiment tracking)",
    )
    images = parser.add_argument_group(
        "images (default: AWS's Deep Learning Containers of the region; README, Images)"
    )
    images.add_argument(
        "--serving",
        choices=SERVING_STACKS,
        help="the endpoint's serving stack: ray (default; AWS's Ray Serve DLC, patched) or "
        "torchserve (the PyTorch 2.6 inference DLC, past its end of patch on 2026-06-30)",
    )
    images.add_argument(
        "--gpu-endpoint",
        action="store_true",
        help="build the endpoint for a GPU instance type: the GPU serving image (under Ray "
        "with its host AMI), EndpointInstanceType defaulting to ml.g5.xlarge",
    )
    for kind, default in (
        ("training", "GPU training image for tuning and TrainModel"),
        ("processing", "CPU image for PrepareData, EvaluateModel, CompareWithDeployed"),
        ("inference", "inference image for the model and the endpoint"),
    ):
        images.add_argument(
            f"--{kind}-image",
            metavar="ECR_URI",
            help=f"{kind} image, an ECR URI with a tag or digest (default: {default})",
        )
    security = parser.add_argument_group(
        "security (infra/dogbreed-pipeline.yaml creates the key, bucket and roles)"
    )
    security.add_argument(
        "--kms-key-id",
        metavar="KEY",
        help="KMS key (ID, ARN or alias) for job volumes and outputs and the endpoint",
    )
    security.add_argument(
        "--subnet",
        action="append",
        default=[],
        metavar="SUBNET_ID",
        help="run jobs and the model in this VPC subnet (repeatable; needs --security-group)",
    )
    security.add_argument(
        "--security-group",
        action="append",
        default=[],
        metavar="SG_ID",
        help="security group for jobs and the model (repeatable; needs --subnet)",
    )
    security.add_argument(
        "--network-isolation",
        action="store_true",
        help="no network for training and processing containers (training then needs "
        "Pretrained=false or weights given through a channel)",
    )
    security.add_argument(
        "--encrypt-inter-container-traffic",
        action="store_true",
        help="encrypt traffic between the instances of distributed training",
    )


def config_from(args, **overrides) -> PipelineConfig:
    """The PipelineConfig that add_config's flags describe (overrides: resolved values)."""
    try:
        return DEFAULTS.replace(
            pipeline_name=args.pipeline_name,
            region=overrides.get("region", args.region),
            bucket=overrides.get("bucket", args.bucket),
            role_arn=args.role_arn,
            debugger=args.debugger,
            kms_key_id=args.kms_key_id,
            subnets=tuple(args.subnet) or None,
            security_group_ids=tuple(args.security_group) or None,
            enable_network_isolation=args.network_isolation or None,
            encrypt_inter_container_traffic=args.encrypt_inter_container_traffic or None,
            use_spot=args.spot or None,
            training_image=args.training_image,
            processing_image=args.processing_image,
            inference_image=args.inference_image,
            mlflow_tracking_arn=args.mlflow_tracking_arn,
            serving=args.serving,
            gpu_endpoint=args.gpu_endpoint or None,
        )
    except ValueError as exc:
        raise UsageError(f"{exc}: fix the flag") from None


def table(rows: list[list[str]]) -> str:
    """Rows of text as aligned columns (the first row is the header), for stdout."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
