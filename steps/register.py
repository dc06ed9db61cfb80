"""Register model: a new version in the model package group, with its evaluation metrics.

Inputs: model.tar.gz from TrainModel (it carries code/inference.py, so no repack step),
evaluation.json from EvaluateModel. Output: the model package ARN (deployed by DeployModel).
"""

from __future__ import annotations

from sagemaker.model import Model
from sagemaker.model_metrics import MetricsSource, ModelMetrics
from sagemaker.workflow.functions import JsonGet
from sagemaker.workflow.model_step import ModelStep
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.steps import ProcessingStep, TrainingStep

from dogbreed_jobs import contract
from pipeline.config import INFERENCE_FRAMEWORK_VERSION, RAY_TORCH_VERSION
from steps.common import BuildContext, service_retry_policies
from steps.evaluation import bf16_verdict, report_uri
from steps.training import model_artifact

NAME = "RegisterModel"
DISPLAY_NAME = "Register model"
DESCRIPTION = "Adds the trained model and its test metrics to the model registry."
CONTENT_TYPES = [
    "image/jpeg",
    "image/png",
    "application/x-image",
    "application/json",
    "application/x-npy",
]
RESPONSE_TYPES = ["application/json"]
# The instance types the version says it serves on: CPU types for the default (CPU) inference
# image, on which a GPU instance would serve on its CPU; GPU types only for --gpu-endpoint (the
# Ray CUDA image needs its host AMI); GPU types too when the user's image (--inference-image)
# is a GPU one.
CPU_INSTANCES = ["ml.c7i.xlarge", "ml.m5.xlarge", "ml.c5.2xlarge"]
GPU_INSTANCES = ["ml.g4dn.xlarge", "ml.g5.xlarge"]
# TorchServe's workers per instance (the toolkit's SAGEMAKER_MODEL_SERVER_WORKERS, its
# default_workers_per_model). Unset, a CPU instance gets one per vCPU, four on ml.c7i.xlarge, each
# with its own copy of DenseNet-161 and torch using every core in each: 16 busy threads on 4
# vCPUs. One worker, with model_fn giving it every vCPU (inference.intra_op_threads), runs one
# forward pass at a time as fast as the instance allows while TorchServe queues the rest; on
# every instance type above (at most one GPU) it is also what the GPU takes.
MODEL_SERVER_WORKERS = 1


def serving_environment(
    ctx: BuildContext, evaluation: ProcessingStep, report: PropertyFile
) -> dict[str, object]:
    """The model's container environment: the evaluation's bf16 verdict for this model, and
    for the PyTorch inference toolkit its entry file in code/ and worker count. Ray Serve's DLC
    needs nothing else: it runs the config.yaml packed at the root of model.tar.gz."""
    verdict = {contract.BF16_ALLOWED_ENV: bf16_verdict(evaluation, report)}
    if ctx.config.serving == "ray":
        return verdict
    return {
        "SAGEMAKER_PROGRAM": contract.SERVING_SCRIPT,
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_REGION": ctx.config.region,
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(MODEL_SERVER_WORKERS),
        **verdict,
    }


def serving_model(
    ctx: BuildContext, training: TrainingStep, evaluation: ProcessingStep, report: PropertyFile
) -> Model:
    """The serving container pointed at the serving code packed inside model.tar.gz, told
    whether the evaluation allowed bf16 for this model."""
    return Model(
        image_uri=ctx.inference_image,
        model_data=model_artifact(training),
        role=ctx.config.role_arn,
        env=serving_environment(ctx, evaluation, report),
        # The endpoint's containers run in the jobs' VPC when one is configured.
        vpc_config=ctx.config.vpc_config,
        sagemaker_session=ctx.session,
    )


def serving_instances(ctx: BuildContext) -> list[str]:
    if ctx.config.gpu_endpoint:
        return GPU_INSTANCES
    gpu = "-gpu-" in ctx.inference_image.rsplit(":", 1)[-1]
    return CPU_INSTANCES + (GPU_INSTANCES if gpu else [])


def tracking_metadata(ctx: BuildContext, evaluation: ProcessingStep, report: PropertyFile):
    """With MLflow tracking, the TrainModel run's id (EvaluateModel finds it and writes it
    into evaluation.json) as the version's customer metadata; None without."""
    if not ctx.config.mlflow_tracking_arn:
        return None
    path = f"{contract.EVALUATION_MLFLOW_KEY}.{contract.TRAINING_RUN_ID_FIELD}"
    run_id = JsonGet(step_name=evaluation.name, property_file=report, json_path=path)
    return {contract.RUN_ID_METADATA: run_id}


def framework_version(ctx: BuildContext) -> str | None:
    """The torch of the default serving image, which loads the trained weights; another
    image's version is not known here, so none is claimed for it."""
    if ctx.config.inference_image:
        return None
    return RAY_TORCH_VERSION if ctx.config.serving == "ray" else INFERENCE_FRAMEWORK_VERSION


def register_step(
    ctx: BuildContext, training: TrainingStep, evaluation: ProcessingStep, report: PropertyFile
) -> ModelStep:
    metrics = ModelMetrics(
        model_statistics=MetricsSource(
            s3_uri=report_uri(evaluation), content_type="application/json"
        )
    )
    step_args = serving_model(ctx, training, evaluation, report).register(
        content_types=CONTENT_TYPES,
        response_types=RESPONSE_TYPES,
        inference_instances=serving_instances(ctx),
        transform_instances=serving_instances(ctx),
        model_package_group_name=ctx.config.model_package_group,
        approval_status=ctx.params.model_approval_status,
        model_metrics=metrics,
        description="DenseNet-161 dog-breed classifier trained by dogbreed-pipeline",
        domain="COMPUTER_VISION",
        task="IMAGE_CLASSIFICATION",
        framework="PYTORCH",
        framework_version=framework_version(ctx),
        customer_metadata_properties=tracking_metadata(ctx, evaluation, report),
    )
    return ModelStep(
        name=NAME,
        display_name=DISPLAY_NAME,
        description=DESCRIPTION,
        step_args=step_args,
        retry_policies=service_retry_policies(),
    )
