"""Check training rules (`--debugger pipeline` only): Debugger's tensor rules, run by us.

Input: TrainModel's output.tar.gz, where train.py put the smdebug trial its own hook saved
(`tensors/`) and the epochs' timing records (`timing.json`). The job runs the bundled
check_rules.py in the CPU processing image over the same four rules as service mode's
DebugRuleConfigurations, with the same parameters. Output: rules.json (a PropertyFile the
registration gate reads: `issues`, `finding`) and report.md. The step never fails on a
finding: check_rules.py exits 0 whatever the statuses, and the gate (steps/condition.py)
decides, from the RuleIssuesBlockRegistration parameter, whether a finding stops registration.
"""

from __future__ import annotations

import json

from sagemaker.processing import ProcessingInput, ProcessingOutput
from sagemaker.workflow.functions import Join
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.steps import ProcessingStep, TrainingStep

from dogbreed_jobs import contract
from steps.common import BuildContext, code_input, job_retry_policies, script_processor
from steps.training import builtin_rules

NAME = "CheckTrainingRules"
REPORT_NAME = "TrainingRules"
TRAINING_DIR = "/opt/ml/processing/training"
OUTPUT_DIR = "/opt/ml/processing/rules"
# What check_rules.py reads of a DebugRuleConfigurations entry; the rest (the rule
# evaluator image, its instance) is how SageMaker runs a built-in rule, not what it checks.
RULE_KEYS = ("RuleConfigurationName", "RuleParameters")


def rule_entries() -> list[dict]:
    """The rules as service mode's DebugRuleConfigurations give them, for `--rules`."""
    return [
        {key: entry[key] for key in RULE_KEYS if key in entry}
        for entry in (rule.to_debugger_rule_config_dict() for rule in builtin_rules())
    ]


def output_archive(training: TrainingStep) -> Join:
    """s3://.../<TrainingJobName>/output/output.tar.gz: where SageMaker puts the tarball of
    a training job's SM_OUTPUT_DATA_DIR (DescribeTrainingJob names only the model's)."""
    return Join(
        on="/",
        values=[
            training.properties.OutputDataConfig.S3OutputPath,
            training.properties.TrainingJobName,
            "output",
            contract.OUTPUT_ARCHIVE,
        ],
    )


def rules_step(ctx: BuildContext, training: TrainingStep) -> tuple[ProcessingStep, PropertyFile]:
    report = PropertyFile(
        name=REPORT_NAME, output_name=contract.RULES_OUTPUT, path=contract.RULES_FILE
    )
    # A small job that reads tensors on a CPU, like the evaluation: the same instance type.
    processor = script_processor(
        ctx,
        contract.CHECK_RULES_SCRIPT,
        ctx.params.evaluation_instance_type,
        "dogbreed-rules",
    )
    step_args = processor.run(
        inputs=[
            code_input(ctx),
            ProcessingInput(
                source=output_archive(training), destination=TRAINING_DIR, input_name="training"
            ),
        ],
        outputs=[
            ProcessingOutput(
                output_name=contract.RULES_OUTPUT,
                source=OUTPUT_DIR,
                destination=ctx.execution_uri("rules"),
            )
        ],
        arguments=[
            "--tensors-archive",
            f"{TRAINING_DIR}/{contract.OUTPUT_ARCHIVE}",
            "--tensors-path",
            contract.TENSORS_FOLDER,
            "--rules",
            json.dumps(rule_entries(), sort_keys=True),
            "--timing-path",
            contract.TIMING_FILE,
            "--output-dir",
            OUTPUT_DIR,
        ],
    )
    step = ProcessingStep(
        name=NAME,
        display_name="Check training rules",
        description=(
            "SageMaker Debugger's built-in rules VanishingGradient, Overfit, Overtraining and "
            "PoorWeightInitialization over the tensors TrainModel saved, as rules.json."
        ),
        step_args=step_args,
        property_files=[report],
        cache_config=ctx.cache,
        retry_policies=job_retry_policies(),
    )
    return step, report
