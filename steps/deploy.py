"""Deploy model: a SageMaker model, then a DeployEndpoint job that releases it safely.

The endpoint is created on the first run; later runs update it blue/green with automatic
rollback on the endpoint's CloudWatch alarms (infra/), then set its autoscaling. The
pipeline's native EndpointStep cannot do that: a DeploymentConfig is refused in a pipeline.
So the release is a small processing job (scripts/release.py, dogbreed_jobs.release) that
calls the API and waits for the outcome, as CompareWithDeployed already asks the API; a
rollback fails the step in one line naming the alarm. `approve` runs the same code.
"""

from __future__ import annotations

from sagemaker.workflow.execution_variables import ExecutionVariables
from sagemaker.workflow.functions import Join
from sagemaker.workflow.model_step import ModelStep
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.steps import ProcessingStep, TrainingStep

from dogbreed_jobs import contract
from pipeline.config import CONFIG_NAME_SEPARATOR
from steps.common import BuildContext, api_job_args, service_retry_policies
from steps.register import serving_model

MODEL_NAME = "CreateModel"
ENDPOINT_NAME = "DeployEndpoint"
REPORT_NAME = "Release"
OUTPUT_DIR = "/opt/ml/processing/release"


def deploy_steps(
    ctx: BuildContext,
    training: TrainingStep,
    register: ModelStep,
    evaluation: ProcessingStep,
    report: PropertyFile,
) -> list:
    create_model = ModelStep(
        name=MODEL_NAME,
        display_name="Create model",
        description="Creates the SageMaker model that the endpoint serves.",
        step_args=serving_model(ctx, training, evaluation, report).create(
            instance_type=ctx.params.endpoint_instance_type
        ),
        retry_policies=service_retry_policies(),
        depends_on=[register],
    )
    return [create_model, release_step(ctx, create_model)]


def release_step(ctx: BuildContext, create_model: ModelStep) -> ProcessingStep:
    params, endpoint = ctx.params, ctx.params.endpoint_name
    # Endpoint configurations are immutable: one per execution, named after it
    # (contract.is_pipeline_config is the rule approve and teardown know them by).
    config_name = Join(
        on=CONFIG_NAME_SEPARATOR, values=[endpoint, ExecutionVariables.PIPELINE_EXECUTION_ID]
    )
    # Numbers as text (to_string): ContainerArguments are strings.
    arguments = [
        "--endpoint-name",
        endpoint,
        "--config-name",
        config_name,
        "--model-name",
        create_model.properties.ModelName,
        "--instance-type",
        params.endpoint_instance_type,
        "--instance-count",
        params.endpoint_instance_count.to_string(),
        "--min-instances",
        params.endpoint_min_instances.to_string(),
        "--max-instances",
        params.endpoint_max_instances.to_string(),
        "--invocations-target",
        params.invocations_per_instance_target.to_string(),
        "--bake-seconds",
        params.endpoint_bake_seconds.to_string(),
        "--region",
        ctx.config.region,
        "--output-dir",
        OUTPUT_DIR,
    ]
    # The alarms infra/ makes for EndpointName, by the contract's rule (its !Sub agrees).
    for suffix in contract.ALARM_SUFFIXES:
        arguments += ["--alarm", Join(on="", values=[endpoint, suffix])]
    if ctx.config.kms_key_id:
        # Encrypts the ML storage volume of the endpoint's instances.
        arguments += ["--kms-key-id", ctx.config.kms_key_id]
    if ctx.config.inference_ami_version:
        # The host AMI a GPU serving image needs.
        arguments += ["--inference-ami-version", ctx.config.inference_ami_version]
    # The job calls SageMaker, CloudWatch and Application Auto Scaling.
    step_args = api_job_args(
        ctx,
        contract.RELEASE_SCRIPT,
        "dogbreed-release",
        (contract.RELEASE_OUTPUT, OUTPUT_DIR, "release"),
        arguments,
    )
    # No retry policy: a release that failed has either rolled back (a retry would try the
    # same model again) or been refused; a retry of the same execution resumes it anyway.
    # Never cached: the endpoint changes between executions while the arguments stay.
    return ProcessingStep(
        name=ENDPOINT_NAME,
        display_name="Deploy endpoint",
        description=(
            "Creates EndpointName on the first run; later runs update it blue/green with "
            "automatic rollback on its CloudWatch alarms, then set its autoscaling."
        ),
        step_args=step_args,
        property_files=[
            PropertyFile(
                name=REPORT_NAME, output_name=contract.RELEASE_OUTPUT, path=contract.RELEASE_FILE
            )
        ],
    )
