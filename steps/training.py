"""Train model: retrain DenseNet-161 with the best hyperparameters, under Debugger.

Inputs: train/valid from PrepareData, learning_rate / batch_size / epochs from the best
tuning job. Outputs: model.tar.gz (weights, class names, settings, serving code).
Debugger rules (VanishingGradient, Overfit, Overtraining, PoorWeightInitialization,
ProfilerReport) run beside the job unless config.enable_debugger is off.
"""

from __future__ import annotations

from sagemaker.debugger import (
    DebuggerHookConfig,
    ProfilerConfig,
    ProfilerRule,
    Rule,
    rule_configs,
)
from sagemaker.workflow.functions import Join
from sagemaker.workflow.steps import ProcessingStep, TrainingStep, TuningStep

from steps.common import BuildContext, job_retry_policies
from steps.estimator import pytorch_estimator, static_hyperparameters
from steps.tuning import HYPERPARAMETER_RANGES, best_hyperparameter, channels

NAME = "TrainModel"
DISPLAY_NAME = "Train model"
DESCRIPTION = (
    "Retrains DenseNet-161 with the best hyperparameters found by the tuning step, on one or "
    "more instances (torch_distributed), with Debugger rules and the system profiler."
)
# Sparse saving: DenseNet-161 tensors are large (hundreds of MB for a few full saves).
HOOK_PARAMETERS = {"train.save_interval": "100", "eval.save_interval": "10"}
PROFILER_INTERVAL_MS = 500


def debugger_settings(ctx: BuildContext) -> dict:
    if not ctx.config.enable_debugger:
        return {"debugger_hook_config": False, "disable_profiler": True}
    rules = [
        Rule.sagemaker(rule_configs.vanishing_gradient()),
        Rule.sagemaker(rule_configs.overfit()),
        Rule.sagemaker(rule_configs.overtraining()),
        Rule.sagemaker(rule_configs.poor_weight_initialization()),
        ProfilerRule.sagemaker(rule_configs.ProfilerReport()),
    ]
    hook = DebuggerHookConfig(
        s3_output_path=ctx.config.s3_uri("debugger"),
        # The rules add the collections they read (losses, weights, gradients, relu_input).
        hook_parameters=dict(HOOK_PARAMETERS),
    )
    profiler = ProfilerConfig(
        s3_output_path=ctx.config.s3_uri("profiler"),
        system_monitor_interval_millis=PROFILER_INTERVAL_MS,
    )
    return {"rules": rules, "debugger_hook_config": hook, "profiler_config": profiler}


def training_step(ctx: BuildContext, prepare: ProcessingStep, tuning: TuningStep) -> TrainingStep:
    hyperparameters = static_hyperparameters(ctx)
    for name in HYPERPARAMETER_RANGES:
        hyperparameters[name] = best_hyperparameter(tuning, name)
    estimator = pytorch_estimator(
        ctx,
        hyperparameters,
        instance_type=ctx.params.training_instance_type,
        instance_count=ctx.params.training_instance_count,
        distribution={"torch_distributed": {"enabled": True}},
        output_path=ctx.config.s3_uri("models"),
        # Keyed by the best tuning job: a retried or spot-interrupted job resumes, a cached
        # rerun finds its finished checkpoint, and new data (a new tuning run) starts afresh.
        checkpoint_s3_uri=Join(
            on="/",
            values=[
                ctx.config.s3_uri("checkpoints"),
                tuning.properties.BestTrainingJob.TrainingJobName,
            ],
        ),
        base_job_name="dogbreed-train",
        **debugger_settings(ctx),
    )
    return TrainingStep(
        name=NAME,
        display_name=DISPLAY_NAME,
        description=DESCRIPTION,
        step_args=estimator.fit(inputs=channels(prepare)),
        cache_config=ctx.cache,
        retry_policies=job_retry_policies(),
    )


def model_artifact(step: TrainingStep):
    return step.properties.ModelArtifacts.S3ModelArtifacts
