"""Tune hyperparameters: DenseNet-161 HPO on the prepared data, maximising valid:accuracy.

Inputs: the train and valid outputs of PrepareData. Ranges are the users' published setup.
Outputs: the best training job and its tuned hyperparameters (read by TrainModel).
"""

from __future__ import annotations

from sagemaker.inputs import TrainingInput
from sagemaker.tuner import (
    CategoricalParameter,
    ContinuousParameter,
    HyperparameterTuner,
    IntegerParameter,
)
from sagemaker.workflow.steps import ProcessingStep, TuningStep

from dogbreed_jobs import contract
from pipeline.metrics import METRIC_DEFINITIONS, OBJECTIVE_METRIC, OBJECTIVE_TYPE
from steps.common import BuildContext, job_retry_policies, tracking_environment
from steps.estimator import pytorch_estimator, static_hyperparameters
from steps.preprocess import output_uri

NAME = "TuneHyperparameters"
DISPLAY_NAME = "Tune hyperparameters"
DESCRIPTION = (
    "Hyperparameter search over learning_rate, batch_size and epochs for DenseNet-161, "
    "maximising validation accuracy (the test split is never seen here)."
)
HYPERPARAMETER_RANGES = {
    "learning_rate": ContinuousParameter(0.001, 0.1),
    # Images per optimizer step, per GPU: the users' published {32, 64, 128}. train.py splits
    # a batch the device cannot hold into micro-batches and accumulates their gradients
    # (dogbreed_jobs/batching.py): on the default ml.g5.2xlarge's A10G, bf16 at 224 px, 128
    # runs as two micro-batches of 64 (README, "Training memory").
    "batch_size": CategoricalParameter([32, 64, 128]),
    "epochs": IntegerParameter(5, 20),
}


def channels(ctx: BuildContext, prepare: ProcessingStep) -> dict:
    """The prepared splits, and the weights channel (PretrainedWeightsUrl) that train.py
    loads instead of downloading when it holds a weights file."""
    inputs = {
        name: TrainingInput(s3_data=output_uri(prepare, name), content_type="application/x-image")
        for name in contract.TRAINING_CHANNELS
    }
    inputs[contract.WEIGHTS_CHANNEL] = TrainingInput(s3_data=ctx.params.pretrained_weights_url)
    return inputs


def tuning_step(ctx: BuildContext, prepare: ProcessingStep) -> TuningStep:
    # Trials are single-instance and run without Debugger: the final TrainModel job carries
    # the rules and the profiler, where their findings matter.
    estimator = pytorch_estimator(
        ctx,
        static_hyperparameters(ctx),
        instance_type=ctx.params.training_instance_type,
        instance_count=1,
        output_path=ctx.config.s3_uri("tuning"),
        base_job_name="dogbreed-hpo",
        debugger_hook_config=False,
        disable_profiler=True,
        environment=tracking_environment(ctx, NAME, ctx.training_image, tuning=True) or None,
    )
    tuner = HyperparameterTuner(
        estimator=estimator,
        objective_metric_name=OBJECTIVE_METRIC,
        objective_type=OBJECTIVE_TYPE,
        hyperparameter_ranges=HYPERPARAMETER_RANGES,
        metric_definitions=METRIC_DEFINITIONS,
        strategy="Bayesian",
        # SageMaker stops trials whose objective lags the median of the others at the same
        # epoch: most of a budget of 8 trials is spent on the few promising ones.
        early_stopping_type="Auto",
        max_jobs=ctx.params.max_tuning_jobs,
        max_parallel_jobs=ctx.params.max_parallel_tuning_jobs,
        base_tuning_job_name="dogbreed-hpo",
    )
    return TuningStep(
        name=NAME,
        display_name=DISPLAY_NAME,
        description=DESCRIPTION,
        # A fixed name: the SDK would otherwise bake a timestamp into the static hyperparameters.
        step_args=tuner.fit(inputs=channels(ctx, prepare), job_name="dogbreed-hpo"),
        cache_config=ctx.cache,
        retry_policies=job_retry_policies(),
    )


def best_hyperparameter(step: TuningStep, name: str):
    return step.properties.BestTrainingJob.TunedHyperParameters[name]
