"""Evaluate model: metrics on the held-out test split, the only step that reads it.

Inputs: model.tar.gz from TrainModel, test/ from PrepareData, and the serving model that
CompareWithDeployed names (or a folder without one). Outputs: evaluation.json (SageMaker
model-quality format, a PropertyFile read by the conditions and the registry, with both
models' figures and the champion/challenger verdict) and a confusion-matrix PNG.
"""

from __future__ import annotations

from sagemaker.processing import ProcessingInput, ProcessingOutput
from sagemaker.workflow.functions import Join, JsonGet
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.steps import ProcessingStep, TrainingStep

from dogbreed_jobs import contract
from steps.common import (
    BuildContext,
    code_input,
    job_retry_policies,
    script_processor,
    tracking_environment,
)
from steps.compare import champion_field
from steps.preprocess import output_uri
from steps.training import model_artifact

NAME = "EvaluateModel"
DISPLAY_NAME = "Evaluate model"
DESCRIPTION = (
    "Accuracy, top-5 accuracy, precision, recall, F1 and the confusion matrix of the trained "
    "model on the test split, written as evaluation.json for the registry."
)
REPORT_NAME = "EvaluationReport"
REPORT_FILE = contract.EVALUATION_FILE
OUTPUT_NAME = contract.EVALUATION_OUTPUT
ACCURACY_PATH = "multiclass_classification_metrics.accuracy.value"
MODEL_DIR = "/opt/ml/processing/model"
CHAMPION_DIR = "/opt/ml/processing/champion"
TEST_DIR = "/opt/ml/processing/test"
OUTPUT_DIR = "/opt/ml/processing/evaluation"


def evaluation_step(
    ctx: BuildContext,
    prepare: ProcessingStep,
    training: TrainingStep,
    compare: ProcessingStep,
    change: PropertyFile,
) -> tuple[ProcessingStep, PropertyFile]:
    report = PropertyFile(name=REPORT_NAME, output_name=OUTPUT_NAME, path=REPORT_FILE)
    processor = script_processor(
        ctx,
        contract.EVALUATE_SCRIPT,
        ctx.params.evaluation_instance_type,
        "dogbreed-evaluate",
        env=tracking_environment(ctx, NAME, ctx.processing_image),
    )
    step_args = processor.run(
        inputs=[
            code_input(ctx),
            ProcessingInput(
                source=model_artifact(training), destination=MODEL_DIR, input_name="model"
            ),
            ProcessingInput(
                source=output_uri(prepare, contract.TEST_SPLIT),
                destination=TEST_DIR,
                input_name="test",
            ),
            # The serving model's model.tar.gz, or a folder without a model when there is
            # none to score: an input cannot be optional at run time.
            ProcessingInput(
                source=champion_field(compare, change, contract.CHAMPION_URI_PATH),
                destination=CHAMPION_DIR,
                input_name="champion",
            ),
        ],
        outputs=[
            ProcessingOutput(
                output_name=OUTPUT_NAME,
                source=OUTPUT_DIR,
                destination=ctx.execution_uri("evaluation"),
            )
        ],
        arguments=[
            *("--model-dir", MODEL_DIR, "--test-dir", TEST_DIR, "--output-dir", OUTPUT_DIR),
            *("--bf16-min-agreement", ctx.params.bf16_min_agreement.to_string()),
            *("--champion-dir", CHAMPION_DIR),
            *("--champion-status", champion_field(compare, change, contract.CHAMPION_STATUS_PATH)),
            *(
                "--champion-model-data",
                champion_field(compare, change, contract.CHAMPION_MODEL_DATA_PATH),
            ),
            *("--champion-note", champion_field(compare, change, contract.CHAMPION_NOTE_PATH)),
            *("--champion-metric", ctx.params.champion_metric),
            *("--champion-tolerance", ctx.params.champion_tolerance.to_string()),
        ],
    )
    step = ProcessingStep(
        name=NAME,
        display_name=DISPLAY_NAME,
        description=DESCRIPTION,
        step_args=step_args,
        property_files=[report],
        cache_config=ctx.cache,
        retry_policies=job_retry_policies(),
    )
    return step, report


def bf16_verdict(step: ProcessingStep, report: PropertyFile) -> JsonGet:
    """evaluation.json's "true"/"false" on serving this model in bf16, for the endpoint's
    environment (contract.BF16_ALLOWED_ENV): the agreement is measured once, here, and reaches
    SageMaker's and run-local's endpoints, and the registered version, the same way."""
    return JsonGet(step_name=step.name, property_file=report, json_path=contract.BF16_ALLOWED_PATH)


def report_uri(step: ProcessingStep):
    base = step.properties.ProcessingOutputConfig.Outputs[OUTPUT_NAME].S3Output.S3Uri
    return Join(on="/", values=[base, REPORT_FILE])
