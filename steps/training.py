"""Train model: retrain DenseNet-161 with the best hyperparameters, under Debugger.

Inputs: train/valid from PrepareData, learning_rate / batch_size / epochs from the best
tuning job. Outputs: model.tar.gz (weights, class names, settings, serving code) and
output.tar.gz (history.json, timing.json; with `--debugger pipeline` also the hook's tensors).
config.debugger decides the Debugger settings (README, "SageMaker Debugger: three modes"):
`service` attaches SageMaker Debugger's hook, the rules VanishingGradient, Overfit,
Overtraining, PoorWeightInitialization and ProfilerReport, and the system profiler;
`pipeline` attaches none of it, and a hyperparameter makes train.py save the same tensors
itself for steps/rules.py's CheckTrainingRules; `off` attaches none and saves none.
"""

from __future__ import annotations

from sagemaker.debugger import (
    CollectionConfig,
    DebuggerHookConfig,
    ProfilerConfig,
    ProfilerRule,
    Rule,
    rule_configs,
)
from sagemaker.workflow.functions import Join
from sagemaker.workflow.steps import ProcessingStep, TrainingStep, TuningStep

from dogbreed_jobs import contract
from steps.common import BuildContext, job_retry_policies, tracking_environment
from steps.estimator import pytorch_estimator, static_hyperparameters
from steps.tuning import HYPERPARAMETER_RANGES, best_hyperparameter, channels

NAME = "TrainModel"
DISPLAY_NAME = "Train model"
DESCRIPTION = (
    "Retrains DenseNet-161 with the best hyperparameters found by the tuning step, on one or "
    "more instances (torch_distributed), with Debugger rules and the system profiler."
)
HOOK_PARAMETERS = contract.HOOK_PARAMETERS
RELU_INPUT_REGEX = contract.RELU_INPUT_REGEX
PROFILER_INTERVAL_MS = 500
# What SageMaker needs to attach no Debugger at all: no hook config (every v2 estimator
# gets one otherwise), no rules, and the profiler disabled (ProfilerConfig.DisableProfiler).
NO_DEBUGGER = {"debugger_hook_config": False, "disable_profiler": True}


def builtin_rules() -> list[Rule]:
    """The four tensor rules, from the SDK's rule configs: their default parameters and the
    collections they make the hook save, in both modes. PoorWeightInitialization's relu_input
    collection and activation_inputs_regex are RELU_INPUT_REGEX instead of the config's
    `.*relu_input`, which matches only DenseNet's 3 transition ReLUs (dogbreed_jobs/contract.py)."""
    relu_input = rule_configs.poor_weight_initialization()
    (collection,) = relu_input["CollectionConfigurations"]
    parameters = {**collection["CollectionParameters"], "include_regex": RELU_INPUT_REGEX}
    return [
        Rule.sagemaker(rule_configs.vanishing_gradient()),
        Rule.sagemaker(rule_configs.overfit()),
        Rule.sagemaker(rule_configs.overtraining()),
        Rule.sagemaker(
            relu_input,
            rule_parameters={"activation_inputs_regex": RELU_INPUT_REGEX},
            collections_to_save=[
                CollectionConfig(name=collection["CollectionName"], parameters=parameters)
            ],
        ),
    ]


def debugger_settings(ctx: BuildContext) -> dict:
    """The estimator's Debugger arguments for config.debugger."""
    if ctx.config.debugger != "service":
        return dict(NO_DEBUGGER)
    hook = DebuggerHookConfig(
        s3_output_path=ctx.config.s3_uri("debugger"),
        # The rules add the collections they read (gradients, relu_input; losses are the
        # hook's default).
        hook_parameters=dict(HOOK_PARAMETERS),
    )
    # No FrameworkProfile: framework profiling is deprecated for PyTorch >= 2.0 (AWS's
    # Debugger documentation), so it would have no effect on our images; system metrics only.
    profiler = ProfilerConfig(
        s3_output_path=ctx.config.s3_uri("profiler"),
        system_monitor_interval_millis=PROFILER_INTERVAL_MS,
    )
    return {
        "rules": [*builtin_rules(), ProfilerRule.sagemaker(rule_configs.ProfilerReport())],
        "debugger_hook_config": hook,
        "profiler_config": profiler,
    }


def debugger_hyperparameters(ctx: BuildContext) -> dict:
    """TrainModel's only: in `pipeline` mode train.py registers the hook itself."""
    if ctx.config.debugger != "pipeline":
        return {}
    return {contract.PIPELINE_HOOK_HYPERPARAMETER: contract.PIPELINE_HOOK}


def training_step(ctx: BuildContext, prepare: ProcessingStep, tuning: TuningStep) -> TrainingStep:
    hyperparameters = {**static_hyperparameters(ctx), **debugger_hyperparameters(ctx)}
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
        environment=tracking_environment(ctx, NAME, ctx.training_image) or None,
        **debugger_settings(ctx),
    )
    return TrainingStep(
        name=NAME,
        display_name=DISPLAY_NAME,
        description=DESCRIPTION,
        step_args=estimator.fit(inputs=channels(ctx, prepare)),
        cache_config=ctx.cache,
        retry_policies=job_retry_policies(),
    )


def model_artifact(step: TrainingStep):
    return step.properties.ModelArtifacts.S3ModelArtifacts
