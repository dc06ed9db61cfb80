"""get_pipeline(config) -> Pipeline, and the deterministic JSON definition.

The build is offline: a boto3 session with inert credentials (never used: nothing here
calls AWS), the bucket given explicitly, image URIs from the SDK's bundled JSON (images()),
and the code referenced by the content-addressed S3 URIs of the bundle, so the SDK uploads
nothing. The JSON is re-serialised with sorted keys so it is byte-identical everywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import warnings

from pipeline.bundle import Bundle
from pipeline.config import (
    DLC_IMAGES,
    GPU_IMAGE_INSTANCE_TYPE,
    INFERENCE_FRAMEWORK_VERSION,
    INFERENCE_IMAGE_INSTANCE_TYPE,
    INFERENCE_PY_VERSION,
    PipelineConfig,
)
from pipeline.definition_json import iter_steps
from pipeline.errors import UsageError

DESCRIPTION = (
    "Prepares a dog-breed ImageFolder, tunes and trains DenseNet-161, evaluates it on the test "
    "split beside the model the endpoint serves and, when test accuracy reaches "
    "AccuracyThreshold, the model is not already deployed or registered and it is not worse "
    "than the serving one (ChampionMetric, ChampionTolerance), registers it; an Approved "
    "version is deployed."
)

# The SDK logs its config-file search and a v2 deprecation banner on import; neither helps here.
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
for _noisy in (
    "sagemaker.config",
    "sagemaker.image_uris",
    "sagemaker.workflow.utilities",
    "sagemaker.workflow._utils",
    "sagemaker.estimator",
    "sagemaker.telemetry.telemetry_logging",
):
    # They warn about fields the SDK pops by design and parameters resolved at run time.
    logging.getLogger(_noisy).setLevel(logging.ERROR)


# An explicit SDK config: the user's ~/.config/sagemaker/config.yaml must not leak tags, KMS
# keys or subnets into a definition that has to be identical on every machine, and the SDK's
# telemetry (an HTTPS request per estimator.fit) must not fire during an offline build.
SDK_CONFIG = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


def _offline_session(config: PipelineConfig, botocore_session=None):
    import boto3
    from sagemaker.workflow.pipeline_context import PipelineSession

    boto_session = boto3.Session(
        aws_access_key_id="offline-build",
        aws_secret_access_key="offline-build",  # noqa: S106  # nosec B106 - inert: no call made
        region_name=config.region,
        botocore_session=botocore_session,
    )
    return PipelineSession(
        boto_session=boto_session,
        default_bucket=config.bucket,
        sagemaker_config=SDK_CONFIG,
    )


@contextlib.contextmanager
def _offline_build(config: PipelineConfig):
    """The offline PipelineSession, with two public SDK/boto3 hooks set for the build only.

    - The SDK re-validates its config against a JSON schema at each of ~90 config lookups
      (~0.07 s each, jsonschema re-checking the schema itself every time): 6 of an export's
      8 seconds. SDK_CONFIG is a constant that `Session()` validates once, as the SDK
      intends; the lookups skip validating that same object again.
    - Every estimator calls `boto3.client("sagemaker")` on boto3's default session
      (sagemaker.interactive_apps). `boto3.setup_default_session` makes that the offline
      session: its client gets the inert credentials instead of searching this machine's
      credential chain (files, SSO, instance metadata).
    Both are put back when the block ends.
    """
    import boto3
    import botocore.session
    import sagemaker.utils as sdk_utils

    validate = sdk_utils.validate_sagemaker_config

    def validate_unless_ours(sagemaker_config=None):
        if sagemaker_config is not SDK_CONFIG:
            validate(sagemaker_config)

    core = botocore.session.get_session()
    session = _offline_session(config, core)
    previous_default = boto3.DEFAULT_SESSION
    boto3.setup_default_session(botocore_session=core)
    sdk_utils.validate_sagemaker_config = validate_unless_ours
    try:
        yield session
    finally:
        sdk_utils.validate_sagemaker_config = validate
        boto3.DEFAULT_SESSION = previous_default


@dataclasses.dataclass(frozen=True)
class Images:
    """The container image of each kind of step."""

    training: str  # tuning trials and TrainModel (GPU)
    processing: str  # PrepareData, EvaluateModel, CompareWithDeployed (CPU)
    inference: str  # the registered model and the endpoint (CPU)


@functools.cache
def sdk_inference_image(region: str, instance_type: str = INFERENCE_IMAGE_INSTANCE_TYPE) -> str:
    """The SDK's PyTorch inference image for the region, `-cpu-` or `-gpu-` as `instance_type`
    is; memoised, it is fixed per region."""
    from sagemaker import image_uris

    try:
        return image_uris.retrieve(
            framework="pytorch",
            region=region,
            version=INFERENCE_FRAMEWORK_VERSION,
            py_version=INFERENCE_PY_VERSION,
            instance_type=instance_type,
            image_scope="inference",
        )
    except ValueError as exc:
        # The SDK's own message lists the regions it knows; say how to build anyway.
        raise UsageError(
            f"{exc} Or give every image: --training-image, --processing-image, --inference-image"
        ) from None


def dlc_registry(region: str) -> str:
    """`<account>.dkr.ecr.<region>.<domain>`: the region's AWS Deep Learning Containers registry.

    Taken from the SDK's inference image for the region: its account table (opt-in regions,
    China and GovCloud have their own accounts) and ECR domain (amazonaws.com.cn in China) are
    the SDK's, and its training table, which stops at 2.8, has the same accounts. AWS lists
    the same accounts for the AL2023 `pytorch` repository (aws/deep-learning-containers,
    docs/reference/region_availability.md), GovCloud aside, which that table leaves out.
    """
    return sdk_inference_image(region).split("/", 1)[0]


def default_inference_image(config: PipelineConfig) -> str:
    """The serving DLC of config.serving for a CPU or a GPU endpoint, in config.region."""
    if config.serving == "torchserve":
        if config.gpu_endpoint:
            return sdk_inference_image(config.region, GPU_IMAGE_INSTANCE_TYPE)
        return sdk_inference_image(config.region)
    kind = "ray-gpu" if config.gpu_endpoint else "ray-cpu"
    return f"{dlc_registry(config.region)}/{DLC_IMAGES[kind]}"


def images(config: PipelineConfig) -> Images:
    """Each kind's image: the config's override, else the default DLC of config.region."""
    return Images(
        training=config.training_image or f"{dlc_registry(config.region)}/{DLC_IMAGES['training']}",
        processing=config.processing_image
        or f"{dlc_registry(config.region)}/{DLC_IMAGES['processing']}",
        inference=config.inference_image or default_inference_image(config),
    )


def get_pipeline(config: PipelineConfig | None = None, bundle: Bundle | None = None, session=None):
    """The Pipeline; `session` defaults to a fresh offline PipelineSession."""
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.pipeline_definition_config import PipelineDefinitionConfig

    from pipeline.parameters import get_parameters
    from steps.champion import champion_step
    from steps.common import BuildContext
    from steps.compare import changed_condition, compare_step
    from steps.condition import (
        approval_step,
        condition_step,
        fail_step,
        rules_condition_step,
    )
    from steps.deploy import deploy_steps
    from steps.evaluation import evaluation_step
    from steps.preprocess import preprocess_step
    from steps.register import register_step
    from steps.rules import rules_step
    from steps.training import training_step
    from steps.tuning import tuning_step

    config = config or PipelineConfig()
    bundle = bundle or Bundle.from_dir()
    params = get_parameters(config, bundle)
    session = session or _offline_session(config)
    chosen = images(config)
    ctx = BuildContext(
        config=config,
        params=params,
        session=session,
        bundle=bundle,
        training_image=chosen.training,
        processing_image=chosen.processing,
        inference_image=chosen.inference,
    )
    prepare = preprocess_step(ctx)
    tuning = tuning_step(ctx, prepare)
    training = training_step(ctx, prepare, tuning)
    # Before the evaluation: it names the serving model that the evaluation scores too.
    compare, change = compare_step(ctx, training)
    evaluation, report = evaluation_step(ctx, prepare, training, compare, change)
    register = register_step(ctx, training, evaluation, report)
    deploy = deploy_steps(ctx, training, register, evaluation, report)
    approved = approval_step(register, if_steps=deploy)
    gate = champion_step(evaluation, report, if_steps=[register, approved])
    registration = [changed_condition(compare, change, if_steps=[gate])]
    checks = []
    if config.debugger == "pipeline":
        # Beside EvaluateModel, after TrainModel; its gate follows the accuracy's.
        rules, findings = rules_step(ctx, training)
        checks.append(rules)
        registration = [rules_condition_step(ctx, rules, findings, if_steps=registration)]
    check = condition_step(
        ctx,
        evaluation,
        report,
        if_steps=registration,
        else_steps=[fail_step(ctx, evaluation, report)],
    )
    return Pipeline(
        name=config.pipeline_name,
        parameters=params.all(),
        steps=[prepare, tuning, training, compare, evaluation, *checks, check],
        sagemaker_session=session,
        # Keep the job names SageMaker generates per execution; custom prefixes would put
        # the same names in every execution and collide.
        pipeline_definition_config=PipelineDefinitionConfig(use_custom_job_prefix=False),
        # No SageMaker Experiments trial per execution: Studio's pipeline view already shows
        # each execution's steps, jobs and metrics, Experiments is superseded by managed
        # MLflow, and every execution creating an experiment, a trial and trial components
        # would need four more actions on the execution role (infra/dogbreed-pipeline.yaml).
        pipeline_experiment_config=None,
    )


def _sort_collections(definition: dict) -> dict:
    """The SDK gathers Debugger collections in a set: order them by name."""
    for entry in iter_steps(definition):
        hook = entry.arguments.get("DebugHookConfig")
        if hook and "CollectionConfigurations" in hook:
            hook["CollectionConfigurations"].sort(key=lambda c: json.dumps(c, sort_keys=True))
    return definition


def definition_dict(config: PipelineConfig | None = None) -> dict:
    config = config or PipelineConfig()
    with _offline_build(config) as session, warnings.catch_warnings():
        # "Running within a PipelineSession ... No Job being started": exactly what we want.
        warnings.filterwarnings("ignore", message="Running within a PipelineSession")
        pipeline = get_pipeline(config, session=session)
        return _sort_collections(json.loads(pipeline.definition()))


def definition_json(config: PipelineConfig | None = None) -> str:
    """The definition as pretty JSON with sorted keys: diffable and byte-identical."""
    return json.dumps(definition_dict(config), indent=2, sort_keys=True) + "\n"
