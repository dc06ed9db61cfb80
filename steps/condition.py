"""The gates: accuracy (and, with `--debugger pipeline`, the rules) before registration,
approval before deployment.

CheckAccuracy reads evaluation.json (PropertyFile) and AccuracyThreshold; its else-branch is
a FailStep whose message states both numbers, so a failed execution says why in Studio.
CheckRuleFindings (pipeline mode only) comes next, in CheckAccuracy's if-branch: it reads
CheckTrainingRules' rules.json and the RuleIssuesBlockRegistration parameter, and when that is
true and a rule found issues, its FailStep names the rule and its finding. A gate of its own
rather than one more condition of CheckAccuracy: a FailStep has one message, and each gate's
says what stopped the execution.
CheckApproval reads the registered version's own ModelApprovalStatus (DescribeModelPackage,
not the parameter that asked for it): only an Approved version reaches the model and
endpoint steps. A PendingManualApproval version ends a successful execution at the
registry, for `dogbreed-pipeline approve` (or Studio's registry) to approve and deploy.
"""

from __future__ import annotations

from sagemaker.workflow.condition_step import ConditionStep
from sagemaker.workflow.conditions import (
    ConditionEquals,
    ConditionGreaterThanOrEqualTo,
    ConditionOr,
)
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
RULES_NAME = "CheckRuleFindings"
RULES_FAIL_NAME = "RuleIssuesFound"


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


def rules_fail_step(rules: ProcessingStep, report: PropertyFile) -> FailStep:
    return FailStep(
        name=RULES_FAIL_NAME,
        display_name="Rule issues found",
        description="Stops the execution without registering or deploying the model.",
        error_message=Join(
            on=" ",
            values=[
                "Debugger rule",
                # "<Rule>: <details of its first IssuesFound>", check_rules.py's summary.
                JsonGet(step_name=rules.name, property_file=report, json_path="finding"),
                "- RuleIssuesBlockRegistration is true, so the model was neither registered "
                "nor deployed (report.md beside rules.json has every rule's result).",
            ],
        ),
    )


def rules_condition_step(
    ctx: BuildContext, rules: ProcessingStep, report: PropertyFile, if_steps: list
) -> ConditionStep:
    issues = JsonGet(step_name=rules.name, property_file=report, json_path="issues")
    return ConditionStep(
        name=RULES_NAME,
        display_name="Check rule findings",
        description=(
            "No Debugger rule found issues, or RuleIssuesBlockRegistration is false: go on to "
            "registration; else fail, naming the rule."
        ),
        conditions=[
            ConditionOr(
                conditions=[
                    ConditionEquals(left=ctx.params.rule_issues_block_registration, right=False),
                    ConditionEquals(left=issues, right=0),
                ]
            )
        ],
        if_steps=if_steps,
        else_steps=[rules_fail_step(rules, report)],
    )
