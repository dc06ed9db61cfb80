"""Every SageMaker Pipeline parameter, with its default.

Studio shows these on the "Start execution" form, and EventBridge schedules start the
pipeline with the defaults, so every parameter has one. Names are PascalCase (Studio
convention). The defaults are the reference setup: 133 dog breeds at 224 px on one GPU.
"""

from __future__ import annotations

import dataclasses

from sagemaker.workflow.parameters import (
    ParameterBoolean,
    ParameterFloat,
    ParameterInteger,
    ParameterString,
)

from pipeline.config import DEFAULT_ENDPOINT_INSTANCE_TYPE, DEFAULT_ENDPOINT_NAME, PipelineConfig


@dataclasses.dataclass(frozen=True)
class Parameters:
    input_data_url: ParameterString
    max_image_side: ParameterInteger
    image_size: ParameterInteger
    pretrained: ParameterBoolean
    processing_instance_type: ParameterString
    training_instance_type: ParameterString
    training_instance_count: ParameterInteger
    max_tuning_jobs: ParameterInteger
    max_parallel_tuning_jobs: ParameterInteger
    evaluation_instance_type: ParameterString
    accuracy_threshold: ParameterFloat
    model_approval_status: ParameterString
    endpoint_name: ParameterString
    endpoint_instance_type: ParameterString
    max_training_seconds: ParameterInteger
    # Only with `--debugger pipeline`, whose CheckTrainingRules step it reads; None otherwise,
    # so the service and off definitions declare exactly the parameters they use.
    rule_issues_block_registration: ParameterBoolean | None = None

    def all(self) -> list:
        values = (getattr(self, field.name) for field in dataclasses.fields(self))
        return [value for value in values if value is not None]


def get_parameters(config: PipelineConfig) -> Parameters:
    return Parameters(
        # An S3 prefix holding train/ valid/ test/, or one .zip of them (dogImages.zip).
        input_data_url=ParameterString("InputDataUrl", default_value=config.s3_uri("input/")),
        # Pre-resizing once in preprocessing removes most per-epoch JPEG decode cost.
        max_image_side=ParameterInteger("MaxImageSide", default_value=320),
        image_size=ParameterInteger("ImageSize", default_value=224),
        pretrained=ParameterBoolean("Pretrained", default_value=True),
        processing_instance_type=ParameterString(
            "ProcessingInstanceType", default_value="ml.c5.2xlarge"
        ),
        training_instance_type=ParameterString(
            "TrainingInstanceType", default_value="ml.g5.2xlarge"
        ),
        training_instance_count=ParameterInteger("TrainingInstanceCount", default_value=1),
        max_tuning_jobs=ParameterInteger("MaxTuningJobs", default_value=8),
        max_parallel_tuning_jobs=ParameterInteger("MaxParallelTuningJobs", default_value=2),
        evaluation_instance_type=ParameterString(
            "EvaluationInstanceType", default_value="ml.m5.xlarge"
        ),
        accuracy_threshold=ParameterFloat("AccuracyThreshold", default_value=0.7),
        # The accuracy condition is the automated gate before registration and deployment;
        # PendingManualApproval records the version for a human to approve in the registry.
        model_approval_status=ParameterString(
            "ModelApprovalStatus",
            default_value="Approved",
            enum_values=["Approved", "PendingManualApproval"],
        ),
        endpoint_name=ParameterString("EndpointName", default_value=DEFAULT_ENDPOINT_NAME),
        endpoint_instance_type=ParameterString(
            "EndpointInstanceType", default_value=DEFAULT_ENDPOINT_INSTANCE_TYPE
        ),
        # Each trial's and TrainModel's MaxRuntimeInSeconds (with spot also its wait for
        # capacity): a job that hangs stops billing after this long. SageMaker's default, 24 h.
        max_training_seconds=ParameterInteger("MaxTrainingSeconds", default_value=86_400),
        # Off by default: a rule's finding is reported (rules.json, report.md) but registers
        # the model anyway, as service mode's rules never stop an execution; on, any
        # IssuesFound ends the execution before registration, naming the rule.
        rule_issues_block_registration=(
            ParameterBoolean("RuleIssuesBlockRegistration", default_value=False)
            if config.debugger == "pipeline"
            else None
        ),
    )
