"""What every step factory shares: the build context, S3 layout, retries and caching."""

from __future__ import annotations

import dataclasses

from sagemaker.network import NetworkConfig
from sagemaker.processing import ProcessingInput, ProcessingOutput, Processor
from sagemaker.workflow.execution_variables import ExecutionVariables
from sagemaker.workflow.functions import Join
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.retry import (
    SageMakerJobExceptionTypeEnum,
    SageMakerJobStepRetryPolicy,
    StepExceptionTypeEnum,
    StepRetryPolicy,
)
from sagemaker.workflow.steps import CacheConfig

from pipeline.bundle import Bundle
from pipeline.config import PipelineConfig
from pipeline.parameters import Parameters
from pipeline.tracking import job_environment

# Where processing jobs find the unpacked code bundle (a ProcessingInput).
CODE_DIR = "/opt/ml/processing/input/code"


@dataclasses.dataclass(frozen=True)
class BuildContext:
    config: PipelineConfig
    params: Parameters
    session: PipelineSession
    bundle: Bundle
    training_image: str
    processing_image: str
    inference_image: str

    def execution_uri(self, *parts: str) -> Join:
        """s3://bucket/prefix/executions/<execution id>/<parts>: one folder per execution."""
        base = self.config.s3_uri("executions")
        return Join(on="/", values=[base, ExecutionVariables.PIPELINE_EXECUTION_ID, *parts])

    @property
    def cache(self) -> CacheConfig:
        return CacheConfig(
            enable_caching=self.config.enable_caching, expire_after=self.config.cache_expire_after
        )


def estimator_security(ctx: BuildContext) -> dict:
    """Encryption, VPC and isolation arguments of the training and tuning estimators.

    Unset options are left out rather than passed as empty values, so the default definition
    is exactly what the SDK writes without them.
    """
    config = ctx.config
    settings = {}
    if config.kms_key_id:
        settings.update(volume_kms_key=config.kms_key_id, output_kms_key=config.kms_key_id)
    if config.subnets:
        settings.update(
            subnets=list(config.subnets), security_group_ids=list(config.security_group_ids)
        )
    if config.enable_network_isolation:
        settings["enable_network_isolation"] = True
    if config.encrypt_inter_container_traffic:
        settings["encrypt_inter_container_traffic"] = True
    return settings


def processor_security(ctx: BuildContext, isolated: bool = True) -> dict:
    """The same options for processing jobs, where VPC and isolation live in a NetworkConfig.

    `isolated=False` for a job that calls AWS APIs itself: network isolation would cut it off
    from them, so it keeps only the VPC and the KMS key.
    """
    config = ctx.config
    isolation = isolated and config.enable_network_isolation
    settings = {}
    if config.kms_key_id:
        settings.update(volume_kms_key=config.kms_key_id, output_kms_key=config.kms_key_id)
    if config.subnets or isolation:
        settings["network_config"] = NetworkConfig(
            enable_network_isolation=isolation,
            subnets=list(config.subnets) or None,
            security_group_ids=list(config.security_group_ids) or None,
        )
    return settings


def service_retry_policies() -> list:
    """For steps that call an API rather than run a job (model, endpoint config)."""
    return [
        StepRetryPolicy(
            exception_types=[StepExceptionTypeEnum.THROTTLING, StepExceptionTypeEnum.SERVICE_FAULT],
            interval_seconds=10,
            backoff_rate=2.0,
            max_attempts=5,
        )
    ]


def job_retry_policies() -> list:
    """Retry throttling and capacity shortages; never a job that failed on its own merits.

    A RESOURCE_LIMIT is an account quota (often 0 for GPU training on a new account): it is
    retried once, after other jobs may have finished, instead of four times over 15 minutes.
    """
    return [
        *service_retry_policies(),
        SageMakerJobStepRetryPolicy(
            exception_types=[
                SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
            ],
            interval_seconds=60,
            backoff_rate=2.0,
            max_attempts=4,
        ),
        SageMakerJobStepRetryPolicy(
            exception_types=[SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT],
            interval_seconds=120,
            max_attempts=1,
        ),
    ]


def tracking_environment(ctx: BuildContext, step_name: str, image: str, tuning=False) -> dict:
    """The MLflow variables of a step's jobs; none without a tracking ARN.

    The execution id in a Training or Processing job's Environment is part of SageMaker's
    cache key, so with tracking on those steps are not reused from the cache (README,
    Experiment tracking); a tuning step's key leaves its Environment out.
    """
    if not ctx.config.mlflow_tracking_arn:
        return {}
    return job_environment(
        uri=ctx.params.mlflow_tracking_uri,
        experiment=ctx.config.pipeline_name,
        execution_id=ExecutionVariables.PIPELINE_EXECUTION_ID,
        step_name=step_name,
        code_bundle=ctx.bundle.sha256[:16],
        image=image,
        tuning=tuning,
    )


def script_processor(
    ctx: BuildContext,
    script: str,
    instance_type,
    base_job_name: str,
    isolated: bool = True,
    env: dict | None = None,
) -> Processor:
    """A processing job running one of the bundled scripts in the (CPU) processing image;
    `isolated` as in processor_security, `env` its environment."""
    return Processor(
        env=env or None,
        role=ctx.config.role_arn,
        image_uri=ctx.processing_image,
        instance_count=1,
        instance_type=instance_type,
        entrypoint=["python3", f"{CODE_DIR}/{script}"],
        base_job_name=base_job_name,
        sagemaker_session=ctx.session,
        **processor_security(ctx, isolated),
    )


def code_input(ctx: BuildContext) -> ProcessingInput:
    """The unpacked code bundle, mounted where script_processor's entrypoint expects it."""
    return ProcessingInput(
        source=ctx.bundle.scripts_uri(ctx.config), destination=CODE_DIR, input_name="code"
    )


def api_job_args(
    ctx: BuildContext,
    script: str,
    base_job_name: str,
    output: tuple[str, str, str],
    arguments: list,
):
    """The step arguments of a small CPU job that calls AWS APIs itself (CompareWithDeployed,
    DeployEndpoint): never network-isolated, since an isolated container cannot reach the
    API (in a VPC it needs the services' VPC endpoints or a NAT gateway); the code bundle as
    its input and one output, `(output name, container folder, execution URI part)`."""
    name, source, part = output
    processor = script_processor(
        ctx, script, ctx.params.processing_instance_type, base_job_name, isolated=False
    )
    return processor.run(
        inputs=[code_input(ctx)],
        outputs=[
            ProcessingOutput(output_name=name, source=source, destination=ctx.execution_uri(part))
        ],
        arguments=arguments,
    )
