"""The champion/challenger gate: CheckChampion, after CheckModelChanged, before registration.

It reads evaluation.json's `champion_gate.passed` (dogbreed_jobs/champion_gate.py decides it
from ChampionMetric and ChampionTolerance, with both models scored on the same test split).
A new model that is worse than the serving one, or a serving model the pipeline cannot
score, ends the execution in the ChampionGateFailed FailStep, whose message is the gate's
reason naming both figures. A FailStep rather than a quiet stop: a scheduled retraining that
produced a worse model is something to be told about (the pipeline's failure notification,
Studio's red execution), and nothing is registered, so there is nothing for a person to find.
"""

from __future__ import annotations

from sagemaker.workflow.condition_step import ConditionStep
from sagemaker.workflow.conditions import ConditionEquals
from sagemaker.workflow.fail_step import FailStep
from sagemaker.workflow.functions import Join, JsonGet
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.steps import ProcessingStep

from dogbreed_jobs import contract

NAME = "CheckChampion"
FAIL_NAME = "ChampionGateFailed"


def gate_field(evaluation: ProcessingStep, report: PropertyFile, path: str) -> JsonGet:
    return JsonGet(step_name=evaluation.name, property_file=report, json_path=path)


def fail_step(evaluation: ProcessingStep, report: PropertyFile) -> FailStep:
    return FailStep(
        name=FAIL_NAME,
        display_name="Champion gate failed",
        description="Stops the execution without registering or deploying the model.",
        error_message=Join(
            on=" ",
            values=[
                "Champion/challenger:",
                gate_field(evaluation, report, contract.GATE_REASON_PATH),
            ],
        ),
    )


def champion_step(
    evaluation: ProcessingStep, report: PropertyFile, if_steps: list
) -> ConditionStep:
    return ConditionStep(
        name=NAME,
        display_name="Check champion",
        description=(
            "The new model is not worse than the serving one on ChampionMetric (within "
            "ChampionTolerance), or nothing serves yet: go on to registration; else fail, "
            "naming both figures."
        ),
        conditions=[
            ConditionEquals(
                left=gate_field(evaluation, report, contract.GATE_PASSED_PATH), right=True
            )
        ],
        if_steps=if_steps,
        else_steps=[fail_step(evaluation, report)],
    )
