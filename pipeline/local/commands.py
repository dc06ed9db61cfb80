"""The `run-local` command of `dogbreed-pipeline`.

`add_commands(commands)` adds it to the CLI's subparsers. Importing this module costs
argparse only: the runner, the SageMaker SDK (for the in-process export) and torch (in the
job subprocesses) are loaded when the command runs, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from pipeline.errors import ExecutionFailed, UsageError

log = logging.getLogger("pipeline.local")

DEFAULT_STORE = Path("local-store")
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


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def add_commands(commands) -> None:
    from pipeline.cli import key_value, pipeline_name

    run = commands.add_parser(
        "run-local",
        help="run the whole pipeline on this machine (no Docker, no AWS)",
        description=DESCRIPTION,
    )
    run.add_argument(
        "--definition",
        type=Path,
        metavar="FILE",
        help="definition JSON to run (default: export the current one in-process)",
    )
    run.add_argument(
        "--pipeline-name",
        type=pipeline_name,
        default="dogbreed-pipeline",
        help="pipeline name for the export, the execution ARN and the cache "
        "(default: dogbreed-pipeline)",
    )
    run.add_argument(
        "--store",
        type=Path,
        default=DEFAULT_STORE,
        metavar="DIR",
        help=f"the local S3, registry, endpoints and records (default: ./{DEFAULT_STORE})",
    )
    run.add_argument(
        "--input",
        type=Path,
        metavar="DIR_OR_ZIP",
        help="dataset (an ImageFolder with train/ valid/ test/, or an archive of one) copied to "
        "InputDataUrl in the store first",
    )
    run.add_argument(
        "--param",
        type=key_value("--param"),
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a pipeline parameter (repeatable), e.g. --param ImageSize=64",
    )
    run.add_argument(
        "--max-trials",
        type=_positive,
        metavar="N",
        help="tuning trials (default: the definition's MaxNumberOfTrainingJobs)",
    )
    run.add_argument(
        "--max-epochs",
        type=_positive,
        metavar="N",
        help="cap the epochs hyperparameter of every training job (quick demos)",
    )
    run.add_argument("--seed", type=_seed, default=0, help="seed of the tuning search (default: 0)")
    run.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="run every step, ignoring CacheConfig (results are still cached for later runs)",
    )
    run.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="steps and tuning trials run at once (default: 1)",
    )
    run.add_argument(
        "--resume",
        nargs="?",
        const=LATEST,
        metavar="EXECUTION_ID",
        help="run a failed or stopped execution again from its failed step, with its saved "
        "definition, parameters and execution id; the steps that finished are reused "
        "(default: the latest execution in the store that did not succeed)",
    )
    run.set_defaults(handler=cmd_run_local)


def _load_definition(args) -> dict:
    if args.definition is not None:
        try:
            return json.loads(args.definition.read_text(encoding="utf-8"))
        except OSError as err:
            raise UsageError(f"--definition {args.definition}: {err.strerror}") from None
        except ValueError as err:
            raise UsageError(f"--definition {args.definition} is not JSON: {err}") from None
    import warnings

    warnings.filterwarnings("ignore", message=".*PipelineSession.*")
    from pipeline.config import PipelineConfig
    from pipeline.definition import definition_json

    log.info("exporting the definition (pass --definition FILE to run a saved one)")
    return json.loads(definition_json(PipelineConfig(pipeline_name=args.pipeline_name)))


def cmd_run_local(args) -> int:
    resuming = getattr(args, "resume", None) is not None
    if resuming and args.definition is not None:
        raise UsageError(
            "run-local: --resume runs the execution's saved definition; drop --definition"
        )
    definition = None if resuming else _load_definition(args)
    from pipeline.local.runner import DefinitionError, Options, resume, run

    options = Options(
        store=args.store,
        parameters=args.param,
        input=args.input,
        max_trials=args.max_trials,
        max_epochs=args.max_epochs,
        seed=args.seed,
        use_cache=args.use_cache,
        workers=args.workers,
        pipeline_name=args.pipeline_name,
    )
    try:
        if resuming:
            outcome = resume(args.resume or None, options)
        else:
            outcome = run(definition, options)
    except DefinitionError as err:
        raise UsageError(f"run-local: {err}") from None
    print(outcome.record["PipelineExecutionArn"], flush=True)
    # Failed runs too: the graph shows where it stopped.
    from pipeline.local.pictures import draw_after_run

    draw_after_run(outcome.path)
    if not outcome.succeeded:
        raise ExecutionFailed(
            f"execution {outcome.record['PipelineExecutionId']} failed: "
            f"{outcome.record['FailureReason']} (record: {outcome.path})"
        )
    log.info("record: %s", outcome.path)
    return 0
