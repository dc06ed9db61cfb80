"""Prepare data: validate the ImageFolder (or its .zip), normalise every image, split to S3.

Inputs: InputDataUrl (S3 prefix or .zip) and the code bundle.
Outputs: train/, valid/, test/ (JPEG ImageFolders with class_names.json) and meta/
(class index, manifest, report of skipped files).
"""

from __future__ import annotations

from sagemaker.processing import ProcessingInput, ProcessingOutput
from sagemaker.workflow.steps import ProcessingStep

from dogbreed_jobs import contract
from steps.common import BuildContext, code_input, job_retry_policies, script_processor

NAME = "PrepareData"
DISPLAY_NAME = "Prepare data"
DESCRIPTION = (
    "Validates the train/valid/test ImageFolder, converts every usable image to upright RGB "
    "JPEG (pre-resized to MaxImageSide), reports skipped files, writes the class index."
)
INPUT_DIR = "/opt/ml/processing/input/data"
OUTPUT_DIR = "/opt/ml/processing/output"
OUTPUTS = contract.PREPROCESS_OUTPUTS


def preprocess_step(ctx: BuildContext) -> ProcessingStep:
    processor = script_processor(
        ctx, contract.PREPROCESS_SCRIPT, ctx.params.processing_instance_type, "dogbreed-prepare"
    )
    step_args = processor.run(
        inputs=[
            code_input(ctx),
            ProcessingInput(
                source=ctx.params.input_data_url, destination=INPUT_DIR, input_name="data"
            ),
        ],
        outputs=[
            ProcessingOutput(
                output_name=name,
                source=f"{OUTPUT_DIR}/{name}",
                destination=ctx.execution_uri("data", name),
            )
            for name in OUTPUTS
        ],
        arguments=[
            "--input-dir",
            INPUT_DIR,
            "--output-dir",
            OUTPUT_DIR,
            "--max-side",
            ctx.params.max_image_side.to_string(),
        ],
    )
    return ProcessingStep(
        name=NAME,
        display_name=DISPLAY_NAME,
        description=DESCRIPTION,
        step_args=step_args,
        cache_config=ctx.cache,
        retry_policies=job_retry_policies(),
    )


def output_uri(step: ProcessingStep, name: str):
    """The S3 URI of one named output, as a property reference resolved at run time."""
    outputs = step.properties.ProcessingOutputConfig.Outputs
    return outputs[name].S3Output.S3Uri
