"""The `dogbreed-pipeline` command: one table of subcommands, and what every command shares.

Only the module of the command being run is imported (the one lazy import of the CLI), so
`dogbreed-pipeline --help` and `<command> --help` answer at once: no SageMaker SDK, boto3 or
torch, which the library modules import where they are used. stdout carries results (a
definition, an ARN, a table); progress and warnings are logged to stderr. Errors the user
can fix are one line on stderr and exit code 2; an execution that fails exits 1.
"""

from __future__ import annotations

import importlib
import logging
import sys

from pipeline.cli.options import PROG, Parser
from pipeline.errors import CliError, from_botocore

# command -> (module in pipeline/cli/, one-line help), in the order `--help` lists them.
COMMANDS = {
    "export": ("build", "write the pipeline definition JSON (offline)"),
    "graph": ("build", "Mermaid flowchart of the pipeline's steps (offline)"),
    "upsert": ("pipelines", "upload the code and create or update the pipeline"),
    "start": ("pipelines", "start an execution (prints its ARN)"),
    "status": ("pipelines", "an execution's status and steps (default: the latest)"),
    "stop": ("pipelines", "stop an execution (default: the latest)"),
    "retry": ("pipelines", "run a failed execution again from its failed steps"),
    "schedule": ("schedules", "start the pipeline on an EventBridge Scheduler schedule"),
    "unschedule": ("schedules", "delete the schedule"),
    "approve": ("approvals", "approve and deploy, or reject, a registered model version"),
    "teardown": ("endpoints", "delete the deployed endpoint, its configurations and models"),
    "weights": ("weights", "put torchvision's ImageNet weights into the bucket, checked"),
    "run-local": ("local_run", "run the whole pipeline on this machine (no Docker, no AWS)"),
    "local-runs": ("local_runs", "the local store's executions and their sizes; --prune old ones"),
    "serve-local": (
        "serving",
        "serve a locally deployed model behind the SageMaker endpoint contract",
    ),
    "predict": ("serving", "top breeds for image files, from serve-local or a SageMaker endpoint"),
    "sample-data": (
        "sample",
        "write a small generated dog-breed-style dataset for demos and tests",
    ),
}

# The loggers whose progress the CLI shows; the SageMaker SDK's chatter stays at WARNING.
_OWN_LOGGERS = ("pipeline", "steps")


def build_parser(only: str | None = None) -> Parser:
    """The parser; with `only`, just that command's arguments (the others list their help)."""
    parser = Parser(
        prog=PROG,
        description="Build, deploy, run and schedule the dog-breed SageMaker pipeline. AWS "
        "commands use the standard AWS environment (AWS_PROFILE, AWS_REGION, credentials, "
        "AWS_ENDPOINT_URL).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="warnings and errors only")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        command = commands.add_parser(name, help=help_text, description=help_text)
        if only in (None, name):
            importlib.import_module(f"pipeline.cli.{module}").PARSERS[name](command)
    return parser


class _Formatter(logging.Formatter):
    def format(self, record):
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{PROG}: {record.levelname.lower()}: {message}"
        return message


def _configure_logging(verbosity: int) -> None:
    level = logging.INFO if verbosity == 0 else logging.DEBUG if verbosity > 0 else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(message)s"))
    for name in _OWN_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_dogbreed_cli", False)]:
            logger.removeHandler(old)
        handler._dogbreed_cli = True
        logger.addHandler(handler)
        logger.setLevel(level)
        # The SDK installs a root handler when imported: do not print everything twice.
        logger.propagate = False
    logging.getLogger("sagemaker").setLevel(logging.DEBUG if verbosity > 1 else logging.WARNING)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity > 1 else logging.WARNING)


def _report(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # The first word naming a command is the command: the global options take no value.
    chosen = next((word for word in argv if word in COMMANDS), "")
    parser = build_parser(only=chosen)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a one-line usage error (exit 2)
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args.verbose - args.quiet)
    try:
        return args.handler(args)
    except CliError as exc:
        _report(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _report("interrupted")
        return 130
    except Exception as exc:
        if "botocore" not in sys.modules:  # not an AWS error, and botocore stays unloaded
            raise
        mapped = from_botocore(exc)
        if mapped is None:
            raise
        _report(str(mapped))
        return mapped.exit_code
