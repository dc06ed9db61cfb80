"""Every literal that crosses from the container scripts to the host (pipeline/, steps/).

The scripts import this module flat (`import contract`), as SageMaker runs them; host code
reaches it through `pipeline.bundle.contract()`, the one door from the host into scripts/.
Standard library only: the host imports no torch, and this file is read by both sides, so a
name or a line format written here is the same on both by construction.

Printed lines the host reads (one line each, `KEY=value` pairs after a prefix):
    METRICS  what SageMaker's metric regexes (pipeline/metrics.py) and the local runner read;
    EPOCH    one per finished epoch: its time and training throughput;
    STEP     training progress, printed with each human progress line;
    TIMING   one per epoch: step-time percentiles and the DataLoader's share of the time.
The human lines beside them are for people and may change; these may not.
"""

from __future__ import annotations

import re

# --------------------------------------------------------------- hyperparameter bounds

# The crop side train.py accepts (--image_size), and so the ImageSize pipeline parameter:
# below 32 px DenseNet's five downsamplings leave no feature map.
IMAGE_SIZE_RANGE = (32, 1024)

# ------------------------------------------------------------------------- entry points

TRAIN_SCRIPT = "train.py"
PREPROCESS_SCRIPT = "preprocess.py"
EVALUATE_SCRIPT = "evaluate.py"
SERVING_SCRIPT = "inference.py"
# The Ray Serve application at the root of model.tar.gz: AWS's Ray Serve DLC runs
# `serve run /opt/ml/model/config.yaml`.
RAY_SERVE_CONFIG = "config.yaml"
COMPARE_SCRIPT = "compare_deployed.py"
# Debugger's tensor rules over a training job's tensors: a processing job of `--debugger
# pipeline` on SageMaker, and the local runner after every training job with rules.
CHECK_RULES_SCRIPT = "check_rules.py"
# The DeployEndpoint job: a blue/green release with auto-rollback alarms and autoscaling
# (dogbreed_jobs.release), which `approve` runs on the host as well.
RELEASE_SCRIPT = "release.py"

# ------------------------------------------------------------------ splits and outputs

TRAIN_SPLIT, VALID_SPLIT, TEST_SPLIT = "train", "valid", "test"
SPLITS = (TRAIN_SPLIT, VALID_SPLIT, TEST_SPLIT)
# preprocess.py's outputs: one folder a split, then the class index, manifest and report;
# meta/ goes last, as its manifest is the marker of a finished run.
META_OUTPUT = "meta"
PREPROCESS_OUTPUTS = (*SPLITS, META_OUTPUT)
# The training job's input channels (SM_CHANNEL_TRAIN, SM_CHANNEL_VALID); test stays unseen.
TRAINING_CHANNELS = (TRAIN_SPLIT, VALID_SPLIT)
# The optional channel of torchvision ImageNet weights (SM_CHANNEL_WEIGHTS), for jobs that
# cannot download them; its pipeline parameter; and what the parameter's default names: a
# folder of the code bundle holding only NO_WEIGHTS_FILE, because a channel cannot be empty
# or absent at run time (train.py then downloads the weights when pretrained).
WEIGHTS_CHANNEL = "weights"
WEIGHTS_PARAMETER = "PretrainedWeightsUrl"
NO_WEIGHTS_FOLDER = "no-weights"
NO_WEIGHTS_FILE = "README.md"
NO_WEIGHTS_TEXT = (
    f"No pretrained weights: the default of the {WEIGHTS_PARAMETER} pipeline parameter. With "
    "Pretrained=true the training jobs download torchvision's ImageNet weights; jobs without "
    "internet need them here instead (`dogbreed-pipeline weights upload`, then "
    f"--param {WEIGHTS_PARAMETER}=S3_URI).\n"
)
# The serving model (the champion) that EvaluateModel also scores: compare_deployed.py finds
# it and names its model.tar.gz, or, when there is none to score, a folder of the code bundle
# holding only NO_CHAMPION_FILE (EvaluateModel's champion input cannot be absent either).
NO_CHAMPION_FOLDER = "no-champion"
NO_CHAMPION_FILE = "README.md"
NO_CHAMPION_TEXT = (
    "No serving model to compare with: the input EvaluateModel's champion channel gets when the "
    "endpoint serves nothing this pipeline can score (model_change.json says why).\n"
)
# compare_deployed.py's `champion.status`: the endpoint serves another model (scored), this
# same model (its scores are the new model's), nothing (a first deployment), or something the
# pipeline cannot read (the gate stops and says why).
CHAMPION_SERVING, CHAMPION_SAME, CHAMPION_NONE, CHAMPION_UNREADABLE = (
    "serving",
    "same",
    "none",
    "unreadable",
)
CHAMPION_STATUSES = (CHAMPION_SERVING, CHAMPION_SAME, CHAMPION_NONE, CHAMPION_UNREADABLE)
# The metrics of evaluation.json the champion/challenger gate can compare (ChampionMetric),
# with their paths in the file; "none" turns the gate off.
GATE_METRICS = {
    "accuracy": "multiclass_classification_metrics.accuracy.value",
    "top5_accuracy": "details.top5_accuracy",
    "macro_f1": "details.macro_f1",
    "weighted_f1": "multiclass_classification_metrics.weighted_f1.value",
}
GATE_OFF = "none"
# evaluation.json's gate verdict, which CheckChampion reads, and its one-line reason.
GATE_PASSED_PATH = "champion_gate.passed"
GATE_REASON_PATH = "champion_gate.reason"
# compare_deployed.py's report fields that EvaluateModel receives (JsonGet) for the champion.
CHAMPION_STATUS_PATH = "champion.status"
CHAMPION_URI_PATH = "champion.uri"
CHAMPION_MODEL_DATA_PATH = "champion.model_data"
CHAMPION_NOTE_PATH = "champion.note"
# evaluate.py's processing output, which holds EVALUATION_FILE and CONFUSION_MATRIX_FILE.
EVALUATION_OUTPUT = "evaluation"
# compare_deployed.py's processing output, which holds MODEL_CHANGE_FILE.
MODEL_CHANGE_OUTPUT = "comparison"
# check_rules.py's processing output, which holds RULES_FILE and RULES_REPORT_FILE.
RULES_OUTPUT = "rules"
# release.py's processing output, which holds RELEASE_FILE.
RELEASE_OUTPUT = "release"

# --------------------------------------------------------------------------- file names

CLASS_NAMES_FILE = "class_names.json"
WEIGHTS_FILE = "model.pth"
SETTINGS_FILE = "model_settings.json"
# SageMaker tars a training job's SM_MODEL_DIR into MODEL_ARCHIVE and SM_OUTPUT_DATA_DIR
# into OUTPUT_ARCHIVE; HISTORY_FILE is in the latter.
# train.py's epoch checkpoints in --checkpoint-dir: the latest, and the one before it, kept
# while a run goes on in case the latest was cut short. The local runner drops the previous
# one of a job that finished.
CHECKPOINT_FILE = "checkpoint.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.previous.pt"
MODEL_ARCHIVE = "model.tar.gz"
OUTPUT_ARCHIVE = "output.tar.gz"
HISTORY_FILE = "history.json"
EVALUATION_FILE = "evaluation.json"
# evaluate.py's verdict on serving the model in bf16 ("true"/"false"), which the pipeline copies
# from EVALUATION_FILE (a JsonGet at this path) into the endpoint's environment variable of the
# same name, where serving_speed's `auto` reads it.
BF16_ALLOWED_ENV = "DOGBREED_BF16_ALLOWED"
BF16_ALLOWED_PATH = f"serving.environment.{BF16_ALLOWED_ENV}"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
MODEL_CHANGE_FILE = "model_change.json"
RULES_FILE = "rules.json"
RELEASE_FILE = "release.json"
RULES_REPORT_FILE = "report.md"
# A rule's status in RULES_FILE: SageMaker's three, and NoData (the rule had nothing to read),
# which SageMaker's DebugRuleEvaluationStatuses lack and the local runner reports as Error.
RULE_NO_ISSUES, RULE_ISSUES, RULE_NO_DATA, RULE_ERROR = (
    "NoIssuesFound",
    "IssuesFound",
    "NoData",
    "Error",
)
RULE_STATUSES = (RULE_NO_ISSUES, RULE_ISSUES, RULE_NO_DATA, RULE_ERROR)
# train.py's timing records (a JSON list of parse_timing dicts) beside HISTORY_FILE, so they
# ship in OUTPUT_ARCHIVE for check_rules.py's profiler section (`--debugger pipeline`).
TIMING_FILE = "timing.json"
# What preprocess.py unpacks as a dataset (and the local runner fetches as a file, not a prefix).
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

# ------------------------------------------------------------------ the Debugger hook

# TrainModel's smdebug hook in both Debugger modes: SageMaker's DebugHookConfig (`service`,
# steps/training.py) and the hook train.py registers itself (`pipeline`) save the same.
# Sparse saving: DenseNet-161 tensors are large (hundreds of MB for a few full saves).
HOOK_PARAMETERS = {"train.save_interval": "100", "eval.save_interval": "10"}
# The ReLU inputs of the relu_input collection, which PoorWeightInitialization reads (its
# activation_inputs_regex is this too). smdebug names a module's input `<module>_input_<i>`.
# AWS's `.*relu_input` matched only DenseNet's 3 transition ReLUs (`transitionN.relu`); all 160
# ReLU inputs would be ~117 MB per image per saved step (fp32, 224 px). This samples every
# depth (12 tensors, ~19 MB per image): the stem (`features.relu0`), the first dense layer of
# each block (`relu1`, `relu2`) and every transition. DenseNet's ReLUs run in place, so what
# smdebug records as a ReLU's "input" may already be its output (docs/container-contract.md).
RELU_INPUT_REGEX = r".*(features\.relu0|denselayer1\.relu[12]|transition\d\.relu)_input_\d+"
# `--debugger pipeline`: this TrainModel hyperparameter, set to PIPELINE_HOOK, makes train.py
# register the hook itself (no DebugHookConfig exists), writing the trial to
# <SM_OUTPUT_DATA_DIR>/TENSORS_FOLDER so it ships in OUTPUT_ARCHIVE. Tuning trials never get it.
PIPELINE_HOOK_HYPERPARAMETER = "debugger_hook"
PIPELINE_HOOK = "pipeline"
TENSORS_FOLDER = "tensors"
# The hook's collections in `pipeline` mode, in debughookconfig.json's shape: what the SDK's
# rule configs make service mode's hook save (gradients and relu_input every 500 steps; losses
# are smdebug's default collection), plus weights, at the same sparse interval as gradients
# (DenseNet-161's weights are ~115 MB a save). tests/unit/test_definition.py checks them against
# the service definition's DebugHookConfig.
PIPELINE_HOOK_COLLECTIONS = (
    {"CollectionName": "losses", "CollectionParameters": {}},
    {"CollectionName": "weights", "CollectionParameters": {"save_interval": "500"}},
    {"CollectionName": "gradients", "CollectionParameters": {"save_interval": "500"}},
    {
        "CollectionName": "relu_input",
        "CollectionParameters": {"include_regex": RELU_INPUT_REGEX, "save_interval": "500"},
    },
)

_NUMBERED_FOLDER = re.compile(r"^\d+\.(.+)$")


def class_name_of(folder: str) -> str:
    """`001.Affenpinscher` -> `Affenpinscher`; a folder without a numeric prefix is its name."""
    match = _NUMBERED_FOLDER.match(folder)
    return match.group(1) if match else folder


# ------------------------------------------------------------------------------- lines

METRICS_PREFIX = "METRICS"
EPOCH_PREFIX = "EPOCH"
STEP_PREFIX = "STEP"
TIMING_PREFIX = "TIMING"
# A finding the user must not miss in a job's log (files preparation skipped, a model that
# did not learn): the local runner shows these lines on its console as they come.
NOTICE_PREFIX = "NOTICE"

# The keys train.py prints on its METRICS line, one a SageMaker metric.
TRAINING_METRIC_KEYS = ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "epoch")
EPOCH_FIELDS = ("epoch", "epochs", "steps", "seconds", "train_images_per_second")
STEP_FIELDS = ("epoch", "epochs", "step", "steps")
TIMING_FIELDS = (
    "epoch",
    "steps",
    "step_seconds_mean",
    "step_seconds_p50",
    "step_seconds_p95",
    "step_seconds_max",
    "data_wait_seconds",
    "compute_seconds",
)
_INTEGER_FIELDS = frozenset({"epoch", "epochs", "step", "steps"})
# A number as the METRICS line prints it (never negative: losses, accuracies, counts).
_NUMBER = r"([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
_PAIR = re.compile(r"(\w+)=(\S+)")


def _line(prefix: str, pairs: list[str]) -> str:
    return " ".join([prefix, *pairs])


def format_notice(text: str) -> str:
    return f"{NOTICE_PREFIX} {text}"


def parse_notice(line: str) -> str | None:
    """The text of a NOTICE line; None for any other line."""
    prefix = f"{NOTICE_PREFIX} "
    return line[len(prefix) :].rstrip("\n") if line.startswith(prefix) else None


def format_metrics(**values: float) -> str:
    """`METRICS epoch=3 train_loss=1.234567 ...`; integers as such, floats with 6 decimals."""
    return _line(
        METRICS_PREFIX,
        [f"{k}={v}" if isinstance(v, int) else f"{k}={v:.6f}" for k, v in values.items()],
    )


def parse_metrics(line: str) -> dict[str, str] | None:
    """The pairs of a METRICS line, as printed (strings); None for any other line."""
    if not line.startswith(f"{METRICS_PREFIX} "):
        return None
    return dict(_PAIR.findall(line))


def metric_regex(key: str) -> str:
    """The SageMaker metric regex whose group 1 is `key`'s value on a METRICS line."""
    return rf"{METRICS_PREFIX} .*\b{key}={_NUMBER}"


def format_epoch(
    epoch: int, epochs: int, steps: int, seconds: float, images_per_second: float
) -> str:
    """`EPOCH epoch=1 epochs=4 steps=2 seconds=12.345678 train_images_per_second=4.567890`."""
    return _line(
        EPOCH_PREFIX,
        [
            f"epoch={epoch}",
            f"epochs={epochs}",
            f"steps={steps}",
            f"seconds={seconds:.6f}",
            f"train_images_per_second={images_per_second:.6f}",
        ],
    )


def format_step(epoch: int, epochs: int, step: int, steps: int) -> str:
    """`STEP epoch=1 epochs=4 step=2 steps=2`: `step` training steps of the epoch are done."""
    return _line(
        STEP_PREFIX, [f"epoch={epoch}", f"epochs={epochs}", f"step={step}", f"steps={steps}"]
    )


def percentile(values, q: float) -> float:
    """The q-quantile (0 <= q <= 1) of the values, interpolated linearly (numpy's default).

    The one implementation for TIMING lines, the local profiler report and the benchmarks.
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def format_timing(epoch: int, step_seconds: list[float], data_wait: float) -> str:
    """`TIMING epoch=1 steps=104 step_seconds_mean=0.41 ... data_wait_seconds=12.3 ...`.

    `step_seconds`: each step's wall time, DataLoader wait included; `data_wait`: their sum of
    time blocked on the DataLoader, what tells an input-bound job from a compute-bound one.
    """
    ordered = sorted(step_seconds)
    total = sum(ordered)
    return _line(
        TIMING_PREFIX,
        [
            f"epoch={epoch}",
            f"steps={len(ordered)}",
            f"step_seconds_mean={total / len(ordered):.4f}",
            f"step_seconds_p50={percentile(ordered, 0.5):.4f}",
            f"step_seconds_p95={percentile(ordered, 0.95):.4f}",
            f"step_seconds_max={ordered[-1]:.4f}",
            f"data_wait_seconds={data_wait:.3f}",
            f"compute_seconds={total - data_wait:.3f}",
        ],
    )


def _parse_fields(line: str, prefix: str, fields: tuple[str, ...]) -> dict | None:
    """The known fields of a `prefix` line, typed; None for another line or one without epoch.

    A value that does not parse is left out rather than failing: a log is read after the fact,
    and one damaged line should cost that figure, not the report.
    """
    if not line.startswith(f"{prefix} "):
        return None
    parsed = {}
    for name, value in _PAIR.findall(line):
        if name in fields:
            try:
                parsed[name] = int(value) if name in _INTEGER_FIELDS else float(value)
            except ValueError:
                continue
    return parsed if "epoch" in parsed else None


def parse_epoch(line: str) -> dict | None:
    return _parse_fields(line, EPOCH_PREFIX, EPOCH_FIELDS)


def parse_step(line: str) -> dict | None:
    return _parse_fields(line, STEP_PREFIX, STEP_FIELDS)


def parse_timing(line: str) -> dict | None:
    return _parse_fields(line, TIMING_PREFIX, TIMING_FIELDS)


# ----------------------------------------------------------------------- MLflow tracking

# The environment that turns tracking on and places a job's run (dogbreed_jobs.tracking).
# The first two are MLflow's own; the rest come from the definition (`--mlflow-tracking-arn`)
# or, on a default definition, from run-local. No URI: no tracking.
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
EXECUTION_ID_ENV = "DOGBREED_EXECUTION_ID"
STEP_NAME_ENV = "DOGBREED_STEP_NAME"
# "Tuning" for the tuning step's trials: each job's run nests under one run of the step.
STEP_TYPE_ENV = "DOGBREED_STEP_TYPE"
# The code bundle's id, sha256[:16] of its tarball: its S3 key holds it (pipeline/bundle.py).
CODE_BUNDLE_ENV = "DOGBREED_CODE_BUNDLE"
IMAGE_ENV = "DOGBREED_IMAGE"
# Where a job that creates the experiment puts its artifacts (run-local's store); unset, the
# tracking server decides (SageMaker's managed MLflow: its S3 artifact store).
ARTIFACT_ROOT_ENV = "DOGBREED_MLFLOW_ARTIFACTS"
TUNING_STEP_TYPE = "Tuning"
# evaluate.py's block in EVALUATION_FILE when tracking is on: RegisterModel puts the
# TrainModel run's id into the model version's CustomerMetadataProperties.
EVALUATION_MLFLOW_KEY = "mlflow"
TRAINING_RUN_ID_FIELD = "training_run_id"
RUN_ID_METADATA = "MlflowRunId"
# What those fields hold when the run is unknown (tracking failed, TrainModel came from the
# step cache): SageMaker's metadata values must be non-empty.
RUN_ID_UNAVAILABLE = "unavailable"


# ------------------------------------------------------------------ endpoint and release

# The endpoint configurations the pipeline makes are named <EndpointName>-<tag>: the deploy
# step's tag is the execution id (SageMaker's lower-case letters and digits, run-local's
# `local-<time>-<hex>`), `approve`'s is v<version>at<unix time>. Releases, approve and
# teardown replace or delete only configurations of this naming: any other is someone else's.
CONFIG_NAME_SEPARATOR = "-"
_CONFIG_TAG = r"(?:[a-z0-9]+|local-\d{8}T\d{6}-[0-9a-f]+)"
# The one production variant of every configuration the pipeline makes. Blue/green updates
# need the same variant name on both fleets, and the alarms and the scalable target name it.
VARIANT_NAME = "AllTraffic"
# The auto-rollback alarms infra/ makes for an endpoint are <EndpointName><suffix> (its
# !Sub names them so; tests/unit/test_infra.py checks they agree).
ALARM_SUFFIXES = ("-5xx-rate", "-model-latency")
# The target-tracking policy the release puts on the endpoint's variant.
SCALING_POLICY_SUFFIX = "-invocations-per-instance"


def is_pipeline_config(endpoint_name: str, config_name: str) -> bool:
    pattern = re.escape(endpoint_name + CONFIG_NAME_SEPARATOR) + _CONFIG_TAG
    return re.fullmatch(pattern, config_name) is not None


def alarm_names(endpoint_name: str) -> list[str]:
    return [endpoint_name + suffix for suffix in ALARM_SUFFIXES]


def scaling_resource_id(endpoint_name: str) -> str:
    """Application Auto Scaling's ResourceId of the endpoint's variant."""
    return f"endpoint/{endpoint_name}/variant/{VARIANT_NAME}"


def scaling_policy_name(endpoint_name: str) -> str:
    return endpoint_name + SCALING_POLICY_SUFFIX
