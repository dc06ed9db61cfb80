"""The gates: accuracy before registration, approval before deployment.

CheckAccuracy reads evaluation.json (PropertyFile) and AccuracyThreshold; its else-branch is
a FailStep whose message states both numbers, so a failed execution says why in Studio.
CheckApproval reads the registered version's own ModelApprovalStatus (DescribeModelPackage,
not the parameter that asked for it): only an Approved version reaches the model and
endpoint steps. A PendingManualApproval version ends a successful execution at the
registry, for `dogbreed-pipeline approve` (or Studio's registry) to approve and deploy.
"""

from __future__ import annotations

from sagemaker.workflow.condition_step import ConditionStep
from sagemaker.workflow.conditions import ConditionEquals, ConditionGreaterThanOrEqualTo
from sagemaker.workflow.fail_step import FailStep
from sagemaker.workflow.functions import Join, JsonGet
from sagemaker.workflow.model_step import ModelStep
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.steps import ProcessingStep

from steps.common import BuildContext
from steps.evaluation import ACCURACY_PATH

NAME = "CheckAccuracy"
FAIL_NAME = "AccuracyBelowThreshold"
APPROVAL_NAME = "CheckApproval"


def test_accuracy(evaluation: ProcessingStep, report: PropertyFile) -> JsonGet:
    return JsonGet(step_name=evaluation.name, property_file=report, json_path=ACCURACY_PATH)


def fail_step(ctx: BuildContext, evaluation: ProcessingStep, report: PropertyFile) -> FailStep:
    return FailStep(
        name=FAIL_NAME,
        display_name="Accuracy below threshold",
        description="Stops the execution without registering or deploying the model.",
        error_message=Join(
            on=" ",
            values=[
                "Test accuracy",
                test_accuracy(evaluation, report),
                "is below AccuracyThreshold",
                ctx.params.accuracy_threshold,
                "so the model was neither registered nor deployed.",
            ],
        ),
    )


def condition_step(
    ctx: BuildContext,
    evaluation: ProcessingStep,
    report: PropertyFile,
    if_steps: list,
    else_steps: list,
) -> ConditionStep:
    return ConditionStep(
        name=NAME,
        display_name="Check accuracy",
        description="Test accuracy >= AccuracyThreshold: go on to registration, else fail.",
        conditions=[
            ConditionGreaterThanOrEqualTo(
                left=test_accuracy(evaluation, report), right=ctx.params.accuracy_threshold
            )
        ],
        if_steps=if_steps,
        else_steps=else_steps,
    )


def approval_step(register: ModelStep, if_steps: list) -> ConditionStep:
    return ConditionStep(
        name=APPROVAL_NAME,
        display_name="Check approval",
        description=(
            "The registered version is Approved: deploy it. PendingManualApproval: the "
            "execution ends registered; `dogbreed-pipeline approve` deploys it."
        ),
        conditions=[
            ConditionEquals(left=register.properties.ModelApprovalStatus, right="Approved")
        ],
        if_steps=if_steps,
        else_steps=[],
    )
