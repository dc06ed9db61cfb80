"""Compare with deployed: skip registration and deployment of a model already there, and
name the serving model (the champion) that EvaluateModel scores beside the new one.

Input: TrainModel's model.tar.gz URI (an argument, not a channel: the script compares URIs
and never downloads the model). Output: model_change.json (a PropertyFile) whose `decision`
the CheckModelChanged condition reads and whose `champion` EvaluateModel's inputs and
arguments read. Never cached: the endpoint and the registry change between executions while
the step's arguments stay the same. It runs before EvaluateModel for that reason.
"""

from __future__ import annotations

from sagemaker.workflow.condition_step import ConditionStep
from sagemaker.workflow.conditions import ConditionEquals
from sagemaker.workflow.functions import JsonGet
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.steps import ProcessingStep, TrainingStep

from dogbreed_jobs import contract
from steps.common import BuildContext, api_job_args, job_retry_policies
from steps.training import model_artifact

NAME = "CompareWithDeployed"
CONDITION_NAME = "CheckModelChanged"
REPORT_NAME = "ModelChange"
OUTPUT_DIR = "/opt/ml/processing/comparison"
NEW = "new"


def compare_step(ctx: BuildContext, training: TrainingStep) -> tuple[ProcessingStep, PropertyFile]:
    report = PropertyFile(
        name=REPORT_NAME,
        output_name=contract.MODEL_CHANGE_OUTPUT,
        path=contract.MODEL_CHANGE_FILE,
    )
    # compare_deployed.py asks the SageMaker API (DescribeEndpoint, ListModelPackages, ...).
    step_args = api_job_args(
        ctx,
        contract.COMPARE_SCRIPT,
        "dogbreed-compare",
        (contract.MODEL_CHANGE_OUTPUT, OUTPUT_DIR, "comparison"),
        arguments=[
            "--model-data",
            model_artifact(training),
            "--endpoint-name",
            ctx.params.endpoint_name,
            "--model-package-group",
            ctx.config.model_package_group,
            "--region",
            ctx.config.region,
            "--output-dir",
            OUTPUT_DIR,
            "--no-champion-uri",
            ctx.bundle.no_champion_uri(ctx.config),
        ],
    )
    step = ProcessingStep(
        name=NAME,
        display_name="Compare with deployed model",
        description=(
            "Is the trained model.tar.gz the one the endpoint serves or the registry's newest "
            "version? Then registration and deployment are skipped. Also names the serving "
            "model that the evaluation scores beside it."
        ),
        step_args=step_args,
        property_files=[report],
        retry_policies=job_retry_policies(),
    )
    return step, report


def champion_field(compare: ProcessingStep, report: PropertyFile, path: str) -> JsonGet:
    """A field of model_change.json's `champion` block (contract.CHAMPION_*_PATH)."""
    return JsonGet(step_name=compare.name, property_file=report, json_path=path)


def changed_condition(
    compare: ProcessingStep, report: PropertyFile, if_steps: list
) -> ConditionStep:
    return ConditionStep(
        name=CONDITION_NAME,
        display_name="Check model changed",
        description=(
            "A new model is registered (and deployed when approved); the same model again "
            "ends the execution here, as CompareWithDeployed's output says."
        ),
        conditions=[
            ConditionEquals(
                left=JsonGet(step_name=compare.name, property_file=report, json_path="decision"),
                right=NEW,
            )
        ],
        if_steps=if_steps,
        else_steps=[],
    )
