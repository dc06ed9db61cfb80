"""The PyTorch estimator that runs scripts/train.py, shared by the tuning and training steps."""

from __future__ import annotations

from sagemaker.pytorch import PyTorch

from dogbreed_jobs import contract
from pipeline.config import TRAINING_FRAMEWORK_VERSION, TRAINING_PY_VERSION
from pipeline.metrics import METRIC_DEFINITIONS
from steps.common import BuildContext, estimator_security

MODEL_NAME = "densenet161"


def static_hyperparameters(ctx: BuildContext) -> dict:
    """Hyperparameters every training job gets; the tuned ones are added by each step."""
    return {
        "model_name": MODEL_NAME,
        "image_size": ctx.params.image_size,
        "pretrained": ctx.params.pretrained,
    }


def cost_settings(ctx: BuildContext) -> dict:
    """The runtime cap and, with config.use_spot, managed spot capacity for a training job.

    SageMaker wants MaxWaitTimeInSeconds >= MaxRuntimeInSeconds; with the same parameter for
    both, MaxTrainingSeconds bounds the wait for spot capacity and the training together.
    """
    settings = {"max_run": ctx.params.max_training_seconds}
    if ctx.config.use_spot:
        settings.update(use_spot_instances=True, max_wait=ctx.params.max_training_seconds)
    return settings


def pytorch_estimator(ctx: BuildContext, hyperparameters: dict, **kwargs) -> PyTorch:
    return PyTorch(
        entry_point=contract.TRAIN_SCRIPT,
        # An S3 tarball: the SDK uses it as is, so building the definition uploads nothing.
        source_dir=ctx.bundle.tarball_uri(ctx.config),
        role=ctx.config.role_arn,
        image_uri=ctx.training_image,
        # With image_uri given the SDK only reads these for its metrics switch (on from 1.3).
        framework_version=TRAINING_FRAMEWORK_VERSION,
        py_version=TRAINING_PY_VERSION,
        hyperparameters=hyperparameters,
        metric_definitions=METRIC_DEFINITIONS,
        sagemaker_session=ctx.session,
        **estimator_security(ctx),
        **cost_settings(ctx),
        **kwargs,
    )
