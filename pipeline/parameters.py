"""Every SageMaker Pipeline parameter, with its default.

Studio shows these on the "Start execution" form, and EventBridge schedules start the
pipeline with the defaults, so every parameter has one. Names are PascalCase (Studio
convention). The defaults are the reference setup: 133 dog breeds at 224 px on one GPU;
they and the values each parameter accepts are declared in pipeline/parameter_specs.py.
"""

from __future__ import annotations

import dataclasses

from sagemaker.workflow.parameters import (
    ParameterBoolean,
    ParameterFloat,
    ParameterInteger,
    ParameterString,
)

from dogbreed_jobs.contract import WEIGHTS_PARAMETER
from pipeline.bundle import Bundle
from pipeline.config import (
    DEFAULT_ENDPOINT_INSTANCE_TYPE,
    DEFAULT_ENDPOINT_NAME,
    GPU_IMAGE_INSTANCE_TYPE,
    PipelineConfig,
)
from pipeline.parameter_specs import SPECS, default


@dataclasses.dataclass(frozen=True)
class Parameters:
    input_data_url: ParameterString
    max_image_side: ParameterInteger
    image_size: ParameterInteger
    pretrained: ParameterBoolean
    pretrained_weights_url: ParameterString
    processing_instance_type: ParameterString
    training_instance_type: ParameterString
    training_instance_count: ParameterInteger
    max_tuning_jobs: ParameterInteger
    max_parallel_tuning_jobs: ParameterInteger
    evaluation_instance_type: ParameterString
    accuracy_threshold: ParameterFloat
    bf16_min_agreement: ParameterFloat
    champion_metric: ParameterString
    champion_tolerance: ParameterFloat
    model_approval_status: ParameterString
    endpoint_name: ParameterString
    endpoint_instance_type: ParameterString
    endpoint_instance_count: ParameterInteger
    endpoint_min_instances: ParameterInteger
    endpoint_max_instances: ParameterInteger
    invocations_per_instance_target: ParameterFloat
    endpoint_bake_seconds: ParameterInteger
    max_training_seconds: ParameterInteger
    # Only with `--debugger pipeline`, whose CheckTrainingRules step it reads; None otherwise,
    # so the service and off definitions declare exactly the parameters they use.
    rule_issues_block_registration: ParameterBoolean | None = None
    # Only with an MLflow tracking ARN (its default): where the jobs log; a schedule or a
    # start may point them elsewhere.
    mlflow_tracking_uri: ParameterString | None = None

    def all(self) -> list:
        values = (getattr(self, field.name) for field in dataclasses.fields(self))
        return [value for value in values if value is not None]


def get_parameters(config: PipelineConfig, bundle: Bundle) -> Parameters:
    # The defaults and what each accepts: pipeline/parameter_specs.py.
    return Parameters(
        input_data_url=ParameterString("InputDataUrl", default_value=config.s3_uri("input/")),
        max_image_side=ParameterInteger("MaxImageSide", default_value=default("MaxImageSide")),
        image_size=ParameterInteger("ImageSize", default_value=default("ImageSize")),
        pretrained=ParameterBoolean("Pretrained", default_value=default("Pretrained")),
        # An S3 URI of torchvision's weights file, for jobs that cannot download it; by
        # default a folder without one (contract.NO_WEIGHTS_FOLDER: a channel cannot be empty).
        pretrained_weights_url=ParameterString(
            WEIGHTS_PARAMETER, default_value=bundle.no_weights_uri(config)
        ),
        processing_instance_type=ParameterString(
            "ProcessingInstanceType", default_value=default("ProcessingInstanceType")
        ),
        training_instance_type=ParameterString(
            "TrainingInstanceType", default_value=default("TrainingInstanceType")
        ),
        training_instance_count=ParameterInteger(
            "TrainingInstanceCount", default_value=default("TrainingInstanceCount")
        ),
        max_tuning_jobs=ParameterInteger("MaxTuningJobs", default_value=default("MaxTuningJobs")),
        max_parallel_tuning_jobs=ParameterInteger(
            "MaxParallelTuningJobs", default_value=default("MaxParallelTuningJobs")
        ),
        evaluation_instance_type=ParameterString(
            "EvaluationInstanceType", default_value=default("EvaluationInstanceType")
        ),
        accuracy_threshold=ParameterFloat(
            "AccuracyThreshold", default_value=default("AccuracyThreshold")
        ),
        bf16_min_agreement=ParameterFloat(
            "Bf16MinAgreement", default_value=default("Bf16MinAgreement")
        ),
        champion_metric=ParameterString(
            "ChampionMetric",
            default_value=default("ChampionMetric"),
            enum_values=list(SPECS["ChampionMetric"].choices),
        ),
        champion_tolerance=ParameterFloat(
            "ChampionTolerance", default_value=default("ChampionTolerance")
        ),
        model_approval_status=ParameterString(
            "ModelApprovalStatus",
            default_value=default("ModelApprovalStatus"),
            enum_values=list(SPECS["ModelApprovalStatus"].choices),
        ),
        endpoint_name=ParameterString("EndpointName", default_value=DEFAULT_ENDPOINT_NAME),
        endpoint_instance_type=ParameterString(
            "EndpointInstanceType",
            default_value=(
                GPU_IMAGE_INSTANCE_TYPE if config.gpu_endpoint else DEFAULT_ENDPOINT_INSTANCE_TYPE
            ),
        ),
        endpoint_instance_count=ParameterInteger(
            "EndpointInstanceCount", default_value=default("EndpointInstanceCount")
        ),
        endpoint_min_instances=ParameterInteger(
            "EndpointMinInstances", default_value=default("EndpointMinInstances")
        ),
        endpoint_max_instances=ParameterInteger(
            "EndpointMaxInstances", default_value=default("EndpointMaxInstances")
        ),
        invocations_per_instance_target=ParameterFloat(
            "InvocationsPerInstanceTarget", default_value=default("InvocationsPerInstanceTarget")
        ),
        endpoint_bake_seconds=ParameterInteger(
            "EndpointBakeSeconds", default_value=default("EndpointBakeSeconds")
        ),
        max_training_seconds=ParameterInteger(
            "MaxTrainingSeconds", default_value=default("MaxTrainingSeconds")
        ),
        rule_issues_block_registration=(
            ParameterBoolean(
                "RuleIssuesBlockRegistration",
                default_value=default("RuleIssuesBlockRegistration"),
            )
            if config.debugger == "pipeline"
            else None
        ),
        mlflow_tracking_uri=(
            ParameterString("MlflowTrackingUri", default_value=config.mlflow_tracking_arn)
            if config.mlflow_tracking_arn
            else None
        ),
    )
