"""Deploy model: a SageMaker model, a new endpoint configuration, and the endpoint.

The endpoint step creates the endpoint on the first run and updates it in place on later
runs (SageMaker picks by whether EndpointName exists), so a schedule keeps one endpoint
serving the latest model that passed the accuracy condition.
"""

from __future__ import annotations

from sagemaker.workflow.endpoint_step import EndpointConfigStep, EndpointStep
from sagemaker.workflow.execution_variables import ExecutionVariables
from sagemaker.workflow.functions import Join
from sagemaker.workflow.model_step import ModelStep
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.steps import ProcessingStep, TrainingStep

from pipeline.config import CONFIG_NAME_SEPARATOR
from steps.common import BuildContext, service_retry_policies
from steps.register import serving_model

MODEL_NAME = "CreateModel"
CONFIG_NAME = "CreateEndpointConfig"
ENDPOINT_NAME = "DeployEndpoint"


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
    # Endpoint configurations are immutable: one per execution, named after it
    # (pipeline.config.is_pipeline_config is the rule approve and teardown know them by).
    config_name = Join(
        on=CONFIG_NAME_SEPARATOR,
        values=[ctx.params.endpoint_name, ExecutionVariables.PIPELINE_EXECUTION_ID],
    )
    endpoint_config = EndpointConfigStep(
        name=CONFIG_NAME,
        display_name="Create endpoint configuration",
        description="A new endpoint configuration for this execution's model.",
        step_args=ctx.session.create_endpoint_config(
            name=config_name,
            model_name=create_model.properties.ModelName,
            initial_instance_count=1,
            instance_type=ctx.params.endpoint_instance_type,
            # Encrypts the ML storage volume of the endpoint's instances.
            kms_key=ctx.config.kms_key_id or None,
            # The host AMI a GPU serving image needs (None: SageMaker's default).
            inference_ami_version=ctx.config.inference_ami_version,
        ),
        retry_policies=service_retry_policies(),
    )
    endpoint = EndpointStep(
        name=ENDPOINT_NAME,
        display_name="Deploy endpoint",
        description="Creates EndpointName on the first run, updates it on later runs.",
        step_args=ctx.session.create_endpoint(
            endpoint_name=ctx.params.endpoint_name,
            config_name=endpoint_config.properties.EndpointConfigName,
        ),
    )
    return [create_model, endpoint_config, endpoint]
