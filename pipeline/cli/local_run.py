"""`run-local`: execute the exported definition on this machine (pipeline/local/)."""

from __future__ import annotations

import json
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import pipeline.cli.argtypes as argtypes
import pipeline.cli.build as build
import pipeline.cli.options as options
from dogbreed_jobs.contract import WEIGHTS_PARAMETER
from pipeline.errors import ExecutionFailed, UsageError
from pipeline.local import pictures, runner, summary
from pipeline.local.prepare import check_input, weights_uri

log = logging.getLogger("pipeline.local")

# `--resume` without an id: argparse's const, never a valid execution id.
LATEST = ""

DESCRIPTION = """\
Execute the pipeline definition on this machine, without Docker or AWS: the same JSON that
`export` writes and `upsert` sends, the same scripts under the SageMaker container contract.
S3 is the folder <store>/s3/<bucket>/<key>; the record of the run, its logs and job folders
are under <store>/executions/<id>/; RegisterModel writes <store>/registry/, the endpoint steps
<store>/endpoints/<name>.json (serve it with `serve-local`). The tuning step runs a seeded
random search (--seed) in place of SageMaker's Bayesian strategy. Exit code 0 when the
execution succeeds, 1 when a step (or the FailStep) fails it, 2 for bad input.
"""


@dataclass(frozen=True)
class Preset:
    parameters: dict[str, str]
    max_trials: int | None = None
    max_epochs: int | None = None
    meaning: str = ""


# What --preset sets; --param, --max-trials and --max-epochs given beside it win.
PRESETS = {
    # Minutes on a laptop's CPU for a few hundred images: DenseNet-161 on 64 px crops, two
    # trials of at most 3 epochs. It deploys whatever accuracy it reaches (the summary says
    # which): it is for trying the whole flow on your images, not for a model to keep.
    "laptop": Preset(
        {"ImageSize": "64", "MaxImageSide": "80", "AccuracyThreshold": "0"},
        max_trials=2,
        max_epochs=3,
        meaning="64 px crops, 2 trials of at most 3 epochs, deploys at any accuracy",
    ),
    # The definition's own values: 224 px, every tuning trial, the accuracy gate.
    "full": Preset({}, meaning="the definition's parameters as they are"),
}


def _with_preset(args) -> tuple[list[tuple[str, str]], int | None, int | None]:
    """(--param values, max trials, max epochs) with the preset's filled in under them."""
    if args.preset is None:
        return args.param, args.max_trials, args.max_epochs
    preset = PRESETS[args.preset]
    given = {name for name, _ in args.param}
    params = [(n, v) for n, v in preset.parameters.items() if n not in given] + args.param
    trials = args.max_trials if args.max_trials is not None else preset.max_trials
    epochs = args.max_epochs if args.max_epochs is not None else preset.max_epochs
    return params, trials, epochs


def _with_weights(params: list[tuple[str, str]], definition: dict, source: Path):
    """--param values with PretrainedWeightsUrl set to where the runner puts --weights."""
    if any(name == WEIGHTS_PARAMETER for name, _ in params):
        raise UsageError(f"run-local: give --weights or --param {WEIGHTS_PARAMETER}, not both")
    if not source.is_file():
        raise UsageError(f"run-local: --weights {source}: no such file")
    try:
        uri = weights_uri(definition, source)
    except runner.DefinitionError as err:
        raise UsageError(f"run-local: {err}") from None
    return [*params, (WEIGHTS_PARAMETER, uri)]


def _load_definition(args) -> dict:
    if args.definition is not None:
        try:
            return json.loads(args.definition.read_text(encoding="utf-8"))
        except OSError as err:
            raise UsageError(f"--definition {args.definition}: {err.strerror}") from None
        except ValueError as err:
            raise UsageError(f"--definition {args.definition} is not JSON: {err}") from None
    log.info("exporting the definition (pass --definition FILE to run a saved one)")
    config = options.DEFAULTS.replace(pipeline_name=args.pipeline_name)
    return json.loads(build.definition_json(config))


def _stop_on_sigterm() -> None:
    """SIGTERM (`kill`, a CI timeout, a container stop) ends the run as Ctrl-C does: the
    runner stops its jobs and records the execution as Stopped, instead of the jobs living
    on as orphans."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def run_local(args) -> int:
    resuming = args.resume is not None
    if resuming and args.definition is not None:
        raise UsageError(
            "run-local: --resume runs the execution's saved definition; drop --definition"
        )
    if resuming and args.preset is not None:
        raise UsageError(
            "run-local: --resume runs with the execution's saved parameters; drop --preset"
        )
    if args.input is not None:
        # First: a dataset the preparation job would refuse stops here, in the user's terms,
        # before the export, the store or any step.
        try:
            check_input(args.input)
        except runner.DefinitionError as err:
            raise UsageError(f"run-local: {err}") from None
    if resuming and args.weights is not None:
        raise UsageError(
            "run-local: --resume runs with the execution's saved weights; drop --weights"
        )
    definition = None if resuming else _load_definition(args)
    params, max_trials, max_epochs = _with_preset(args)
    if args.weights is not None:
        params = _with_weights(params, definition, args.weights)
    run_options = runner.Options(
        store=args.store,
        parameters=params,
        input=args.input,
        weights=args.weights,
        max_trials=max_trials,
        max_epochs=max_epochs,
        seed=args.seed,
        use_cache=args.use_cache,
        workers=args.workers,
        pipeline_name=args.pipeline_name,
        container_python=args.container_python,
    )
    _stop_on_sigterm()
    try:
        if resuming:
            outcome = runner.resume(args.resume or None, run_options)
        else:
            outcome = runner.run(definition, run_options)
    except runner.DefinitionError as err:
        raise UsageError(f"run-local: {err}") from None
    print(outcome.record["PipelineExecutionArn"], flush=True)
    # Failed runs too: the graph shows where it stopped.
    drawn = pictures.draw_after_run(outcome.path)
    if not outcome.succeeded:
        raise ExecutionFailed(
            f"execution {outcome.record['PipelineExecutionId']} failed: "
            f"{outcome.record['FailureReason']} (record: {outcome.path})"
        )
    log.info("record: %s", outcome.path)
    for line in summary.lines(outcome.record, args.store, drawn.folder if drawn else None):
        log.info("%s", line)
    return 0


def add_run_local(parser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument(
        "--definition",
        type=Path,
        metavar="FILE",
        help="definition JSON to run (default: export the current one in-process)",
    )
    options.add_pipeline_name(
        parser, "pipeline name for the export, the execution ARN and the cache"
    )
    options.add_store(parser)
    parser.add_argument(
        "--input",
        type=Path,
        metavar="DIR_OR_ZIP",
        help="dataset (an ImageFolder with train/ valid/ test/, or an archive of one) copied to "
        "InputDataUrl in the store first",
    )
    options.add_params(parser, ", e.g. --param ImageSize=64")
    parser.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="torchvision's ImageNet weights file for Pretrained=true (e.g. "
        "densenet161-8d451a50.pth), copied into the store and given to the training jobs as "
        f"{WEIGHTS_PARAMETER}: no download (jobs without internet, --network-isolation)",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="a set of parameters and limits: "
        + "; ".join(f"{name}: {preset.meaning}" for name, preset in sorted(PRESETS.items()))
        + " (--param, --max-trials and --max-epochs beside it win)",
    )
    parser.add_argument(
        "--max-trials",
        type=argtypes.whole_number(1),
        metavar="N",
        help="tuning trials (default: the definition's MaxNumberOfTrainingJobs)",
    )
    parser.add_argument(
        "--max-epochs",
        type=argtypes.whole_number(1),
        metavar="N",
        help="cap the epochs hyperparameter of every training job (quick demos)",
    )
    parser.add_argument(
        "--seed",
        type=argtypes.whole_number(0, 2**63 - 1),
        default=0,
        help="seed of the tuning search (default: 0)",
    )
    parser.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="run every step, ignoring CacheConfig (results are still cached for later runs)",
    )
    parser.add_argument(
        "--workers",
        type=argtypes.whole_number(1),
        default=1,
        metavar="N",
        help="steps and tuning trials run at once (default: 1)",
    )
    parser.add_argument(
        "--container-python",
        type=Path,
        metavar="PYTHON_OR_VENV",
        help="run every job with this Python, and start training jobs through AWS's "
        "training toolkit (sagemaker-training) as SageMaker does; `bin/container-env "
        "training` builds a venv that mirrors the training image (default: this Python and "
        "the runner's own launcher)",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=LATEST,
        metavar="EXECUTION_ID",
        help="run a failed or stopped execution again from its failed step, with its saved "
        "definition, parameters and execution id; the steps that finished are reused "
        "(default: the latest execution in the store that did not succeed)",
    )
    parser.set_defaults(handler=run_local)


PARSERS = {"run-local": add_run_local}
