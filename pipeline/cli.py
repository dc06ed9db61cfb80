"""The `dogbreed-pipeline` command: export, upsert, start, status, schedule, unschedule, graph.

Importing this module is cheap (argparse and pipeline.config only): boto3, the SageMaker SDK
and torch are imported inside the commands that use them, so `--help` answers at once.
stdout carries results (a definition, an ARN, a table); progress and warnings are logged to
stderr. Errors the user can fix are one line on stderr and exit code 2; an execution that
fails under `start --wait` exits 1.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import logging
import math
import re
import sys
from pathlib import Path

from pipeline.config import NAME_RE, ROLE_ARN_RE, PipelineConfig
from pipeline.errors import CliError, UsageError

PROG = "dogbreed-pipeline"
log = logging.getLogger("pipeline.cli")

# The loggers whose progress the CLI shows; the SageMaker SDK's chatter stays at WARNING.
_OWN_LOGGERS = ("pipeline", "steps")
_DEFAULTS = PipelineConfig()


# --------------------------------------------------------------------------- input types


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong, and where the help is."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def key_value(flag: str):
    example = "Team=vision" if flag == "--tag" else "MaxTuningJobs=4"

    def parse(text: str) -> tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"{text!r} is not Name=Value (e.g. {flag} {example})")
        return key.strip(), value

    parse.__name__ = f"{flag} Name=Value"
    return parse


def tag(text: str) -> tuple[str, str]:
    key, value = key_value("--tag")(text)
    if key.lower().startswith("aws:"):
        raise argparse.ArgumentTypeError(f"tag key {key!r}: the aws: prefix is reserved by AWS")
    if len(key) > 128 or len(value) > 256:
        raise argparse.ArgumentTypeError(
            f"tag {key!r}: keys are at most 128 characters and values at most 256"
        )
    if not re.fullmatch(r"[\w .:/=+@-]*", key + value):
        raise argparse.ArgumentTypeError(
            f"tag {key!r}: use letters, digits, spaces and _ . : / = + - @ only"
        )
    return key, value


def role_arn(text: str) -> str:
    if not ROLE_ARN_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an IAM role ARN: expected arn:aws:iam::<12-digit account>:role/<name>"
        )
    return text


def pipeline_name(text: str) -> str:
    if not NAME_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: pipeline names hold letters, digits and hyphens (at most 256)"
        )
    return text


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def execution_display_name(text: str) -> str:
    if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,81}", text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a display name holds letters, digits and hyphens (at most 82)"
        )
    return text


# --------------------------------------------------------------------------- schedules

_CRON_FIELDS = (
    # name, low, high, names, extra characters allowed
    ("minutes", 0, 59, None, ""),
    ("hours", 0, 23, None, ""),
    ("day-of-month", 1, 31, None, "?LW"),
    ("month", 1, 12, "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC", ""),
    ("day-of-week", 1, 7, "SUN MON TUE WED THU FRI SAT", "?L#"),
    ("year", 1970, 2199, None, ""),
)
_CRON_HELP = (
    "EventBridge cron has 6 fields, cron(minutes hours day-of-month month day-of-week year), "
    "with ? in day-of-month or day-of-week, e.g. 'cron(0 3 * * ? *)' (03:00 daily), or use "
    "'rate(1 day)'"
)


def _cron_value(token: str, low: int, high: int, names: str | None) -> int:
    if names and token.upper() in names.split():
        return names.split().index(token.upper()) + low
    if not token.isdigit() or not low <= int(token) <= high:
        raise ValueError(f"{token!r} is outside {low}-{high}")
    return int(token)


def _check_cron_field(text: str, spec) -> None:
    name, low, high, names, extra = spec
    if text == "?":
        if "?" not in extra:
            raise ValueError(f"? is only allowed in day-of-month or day-of-week, not {name}")
        return
    for item in text.split(","):
        if not item:
            raise ValueError(f"empty item in {name} {text!r}")
        if "L" in extra and item.upper() in ("L", "LW"):
            if item.upper() == "LW" and "W" not in extra:
                raise ValueError(f"LW is only allowed in day-of-month, not {name}")
            continue
        if "W" in extra and item.upper().endswith("W"):
            _cron_value(item[:-1], low, high, names)
            continue
        if "#" in extra and "#" in item:
            day, _, nth = item.partition("#")
            _cron_value(day, low, high, names)
            if nth not in {"1", "2", "3", "4", "5"}:
                raise ValueError(f"{item!r}: the n in day#n is 1-5")
            continue
        if "L" in extra and name == "day-of-week" and item.upper().endswith("L"):
            _cron_value(item[:-1], low, high, names)
            continue
        base, slash, step = item.partition("/")
        if slash and (not step.isdigit() or not 1 <= int(step) <= high):
            raise ValueError(f"{item!r}: the step after / must be 1-{high}")
        if base == "*":
            continue
        start, dash, end = base.partition("-")
        _cron_value(start, low, high, names)
        if dash:
            _cron_value(end, low, high, names)


def schedule_expression(text: str) -> str:
    """The EventBridge expression for --cron: cron(...), wrapper optional, or rate(...)."""
    expression = " ".join(text.split())
    rate = re.fullmatch(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)", expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        singular = unit.rstrip("s")
        if singular not in ("minute", "hour", "day") or value < 1:
            raise argparse.ArgumentTypeError(
                f"{text!r}: rate takes a positive whole number and minute(s), hour(s) or "
                "day(s), e.g. 'rate(12 hours)'"
            )
        expected = singular if value == 1 else singular + "s"
        if unit != expected:
            raise argparse.ArgumentTypeError(
                f"{text!r}: EventBridge wants 'rate({value} {expected})' "
                "(singular unit for 1, plural otherwise)"
            )
        return f"rate({value} {expected})"
    wrapped = re.fullmatch(r"cron\((.*)\)", expression)
    body = (wrapped.group(1) if wrapped else expression).strip()
    fields = body.split(" ")
    if len(fields) == 5 and not wrapped:
        minute, hour, dom, month, dow = fields
        hint = ""
        if dow == "*":
            hint = f"; did you mean 'cron({minute} {hour} {dom} {month} ? *)'?"
        raise argparse.ArgumentTypeError(f"{text!r} has 5 fields (Unix cron): {_CRON_HELP}{hint}")
    if len(fields) != 6 or not body:
        raise argparse.ArgumentTypeError(f"{text!r}: {_CRON_HELP}")
    try:
        for field, spec in zip(fields, _CRON_FIELDS, strict=True):
            _check_cron_field(field, spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}; {_CRON_HELP}") from None
    dom, dow = fields[2], fields[4]
    if (dom == "?") == (dow == "?"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: exactly one of day-of-month and day-of-week must be '?'; {_CRON_HELP}"
        )
    return f"cron({body})"


def timezone_name(text: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        try:
            zoneinfo.ZoneInfo("UTC")
        except zoneinfo.ZoneInfoNotFoundError:
            return text  # no time zone database here to check against: let AWS judge
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an IANA time zone (e.g. UTC, Europe/Paris, America/New_York)"
        ) from None
    return text


def schedule_name(text: str) -> str:
    from pipeline.aws import SCHEDULE_NAME_RE

    if not SCHEDULE_NAME_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: schedule names are 1-64 letters, digits and - _ ."
        )
    return text


# --------------------------------------------------------------------------- parameters


def _parameter_value(declared: dict, text: str) -> str:
    """The value to send for a parameter of the definition, or ValueError saying why not."""
    kind = declared.get("Type", "String")
    if kind == "Integer":
        if not re.fullmatch(r"[+-]?\d+", text.strip()):
            raise ValueError(f"expects an Integer, got {text!r}")
        value = str(int(text))
    elif kind == "Float":
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"expects a Float, got {text!r}")
        value = text.strip()
    elif kind == "Boolean":
        if text.strip().lower() not in ("true", "false"):
            raise ValueError(f"expects a Boolean (true or false), got {text!r}")
        value = text.strip().lower()
    else:
        value = text
    if len(value) > 1024:
        raise ValueError("values are at most 1024 characters")
    enum = declared.get("EnumValues")
    if enum and value not in [str(choice) for choice in enum]:
        raise ValueError(f"must be one of {', '.join(map(str, enum))}, got {text!r}")
    return value


def validate_parameters(
    definition: dict, given: list[tuple[str, str]], pipeline: str
) -> list[dict[str, str]]:
    """Check --param values against the definition's Parameters.

    Returns the PipelineParameters list that StartPipelineExecution takes.
    """
    declared = {param["Name"]: param for param in definition.get("Parameters", [])}
    result, seen = [], set()
    for name, text in given:
        if name in seen:
            raise UsageError(f"--param {name} is given twice: keep one")
        seen.add(name)
        if name not in declared:
            close = difflib.get_close_matches(name, declared, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UsageError(
                f"unknown parameter {name!r} for pipeline {pipeline}: {hint}"
                f"valid: {', '.join(sorted(declared)) or '(none)'}"
            )
        try:
            value = _parameter_value(declared[name], text)
        except ValueError as exc:
            raise UsageError(f"--param {name} {exc}") from None
        result.append({"Name": name, "Value": value})
    return result


# --------------------------------------------------------------------------- commands


def _config(args, **overrides) -> PipelineConfig:
    try:
        return _DEFAULTS.replace(
            pipeline_name=args.pipeline_name,
            region=overrides.get("region", args.region),
            bucket=overrides.get("bucket", args.bucket),
            role_arn=args.role_arn,
            enable_debugger=False if args.no_debugger else None,
            kms_key_id=args.kms_key_id,
            subnets=tuple(args.subnet) or None,
            security_group_ids=tuple(args.security_group) or None,
            enable_network_isolation=args.network_isolation or None,
            encrypt_inter_container_traffic=args.encrypt_inter_container_traffic or None,
        )
    except ValueError as exc:
        raise UsageError(f"{exc}: fix the flag") from None


def _definition_json(config: PipelineConfig) -> str:
    import warnings

    warnings.filterwarnings("ignore", message=".*PipelineSession.*")
    from pipeline.definition import definition_json

    return definition_json(config)


def _write(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}") from None
    log.info("wrote %s", out)


def cmd_export(args) -> int:
    config = _config(args)
    _write(_definition_json(config), args.out)
    return 0


def cmd_graph(args) -> int:
    import json

    from pipeline.graph import mermaid

    config = _config(args)
    _write(mermaid(json.loads(_definition_json(config))), args.out)
    return 0


def _connect(args):
    from pipeline import aws

    return aws.connect(region=args.region, profile=args.profile)


def cmd_upsert(args) -> int:
    from pipeline import aws
    from pipeline.bundle import Bundle

    client = _connect(args)
    owner = None
    if args.bucket is None:
        owner = client.account_id()
        bucket = aws.default_bucket(client.region, owner)
        log.info("bucket: %s (the SageMaker default for this account and region)", bucket)
    else:
        bucket = args.bucket
    config = _config(args, region=client.region, bucket=bucket)
    # Cheap checks first: the definition takes seconds to build.
    aws.check_bucket(client, config.bucket, expected_owner=owner)
    bundle = Bundle.from_dir()
    log.info("building the definition for %s in %s", config.pipeline_name, config.region)
    definition = _definition_json(config)
    uploaded, skipped = aws.upload_objects(client, config.bucket, bundle.objects(config))
    log.info("code bundle %s: %d uploaded, %d already there", bundle.sha256[:16], uploaded, skipped)
    from pipeline.definition import DESCRIPTION

    arn, created = aws.upsert_pipeline(
        client,
        config,
        definition,
        description=f"{DESCRIPTION} Code bundle sha256:{bundle.sha256[:16]}.",
        tags=args.tag,
    )
    log.info("%s %s", "created" if created else "updated", arn)
    print(arn)
    return 0


def cmd_start(args) -> int:
    from pipeline import aws

    client = _connect(args)
    pipeline = aws.describe_pipeline(client, args.pipeline_name)
    parameters = validate_parameters(pipeline["Definition"], args.param, args.pipeline_name)
    arn = aws.start_execution(client, args.pipeline_name, parameters, args.display_name)
    print(arn, flush=True)
    if args.wait:
        try:
            aws.wait_for_execution(client, arn, interval=args.poll_interval, timeout=args.timeout)
        except KeyboardInterrupt:
            log.warning("stopped waiting; the execution keeps running: %s status %s", PROG, arn)
            return 130
    return 0


def _when(value) -> str:
    """A timestamp in UTC, to the second (botocore's are time-zone aware)."""
    if not hasattr(value, "astimezone"):
        return "-"
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def cmd_status(args) -> int:
    from pipeline import aws

    if args.execution_arn:
        match = aws.EXECUTION_ARN_RE.match(args.execution_arn)
        if not match:
            raise UsageError(
                f"{args.execution_arn!r} is not a pipeline execution ARN (arn:aws:sagemaker:"
                "<region>:<account>:pipeline/<name>/execution/<id>)"
            )
        if args.region is None:
            args.region = match.group("region")
    client = _connect(args)
    arn = args.execution_arn or aws.latest_execution_arn(client, args.pipeline_name)
    execution = aws.describe_execution(client, arn)
    from botocore.exceptions import ClientError

    try:
        steps = aws.execution_steps(client, arn)
    except ClientError as exc:
        from pipeline.errors import one_line

        log.warning("cannot list the steps: %s", one_line(exc))
        steps = []
    lines = [
        f"Execution  {arn}",
        f"Name       {execution.get('PipelineExecutionDisplayName') or '-'}",
        f"Status     {execution['PipelineExecutionStatus']}",
        f"Started    {_when(execution.get('CreationTime'))}",
        f"Updated    {_when(execution.get('LastModifiedTime'))}",
    ]
    if execution.get("FailureReason"):
        lines.append(f"Reason     {' '.join(execution['FailureReason'].split())}")
    rows = [["STEP", "TYPE", "STATUS", "STARTED", "ENDED", "REASON"]]
    for step in sorted(steps, key=lambda s: (s.get("StartTime") is None, s.get("StartTime") or 0)):
        rows.append(
            [
                step.get("StepName", "?"),
                step.get("StepType") or "-",
                step.get("StepStatus", "?"),
                _when(step.get("StartTime")),
                _when(step.get("EndTime")),
                " ".join((step.get("FailureReason") or "").split())[:120],
            ]
        )
    print("\n".join(lines))
    print()
    print(_table(rows) if len(rows) > 1 else "(no steps yet)")
    return 0


def _default_schedule_name(args) -> str:
    name = args.name or f"{args.pipeline_name}-schedule"
    try:
        return schedule_name(name)
    except argparse.ArgumentTypeError:
        raise UsageError(
            f"{name!r} is too long or malformed for a schedule name: pass --name (1-64 letters, "
            "digits and - _ .)"
        ) from None


def cmd_schedule(args) -> int:
    from pipeline import aws

    name = _default_schedule_name(args)
    client = _connect(args)
    pipeline = aws.describe_pipeline(client, args.pipeline_name)
    definition = pipeline["Definition"]
    parameters = validate_parameters(definition, args.param, args.pipeline_name)
    given = {param["Name"] for param in parameters}
    missing = [
        param["Name"]
        for param in definition.get("Parameters", [])
        if param.get("DefaultValue") is None and param["Name"] not in given
    ]
    if missing:
        raise UsageError(
            f"a schedule starts the pipeline with its defaults, and {', '.join(missing)} "
            "have none: give them with --param Name=Value"
        )
    arn, created = aws.upsert_schedule(
        client,
        name=name,
        group=args.group,
        expression=args.cron,
        timezone=args.timezone,
        pipeline_arn=pipeline["PipelineArn"],
        role_arn=args.role_arn,
        parameters=parameters,
        description=f"Starts SageMaker pipeline {args.pipeline_name} ({PROG} schedule)",
    )
    log.info(
        "%s schedule %s: %s%s starts %s",
        "created" if created else "updated",
        name,
        args.cron,
        f" ({args.timezone})" if args.timezone else " (UTC)",
        args.pipeline_name,
    )
    print(arn)
    return 0


def cmd_unschedule(args) -> int:
    from pipeline import aws

    name = _default_schedule_name(args)
    client = _connect(args)
    if aws.delete_schedule(client, name=name, group=args.group):
        log.info("deleted schedule %s", name)
    else:
        log.warning(
            "no schedule %r in group %r (%s): nothing to remove", name, args.group, client.region
        )
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="Build, deploy, run and schedule the dog-breed SageMaker pipeline. AWS "
        "commands use the standard AWS environment (AWS_PROFILE, AWS_REGION, credentials, "
        "AWS_ENDPOINT_URL).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="warnings and errors only")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    aws_opts = Parser(add_help=False)
    aws_opts.add_argument("--region", help="AWS region (default: AWS_REGION or the profile's)")
    aws_opts.add_argument("--profile", help="AWS profile (default: AWS_PROFILE)")

    name_opt = Parser(add_help=False)
    name_opt.add_argument(
        "--pipeline-name",
        type=pipeline_name,
        default=_DEFAULTS.pipeline_name,
        help=f"pipeline name (default: {_DEFAULTS.pipeline_name})",
    )

    def config_opts(role_required: bool) -> Parser:
        opts = Parser(add_help=False)
        opts.add_argument(
            "--role-arn",
            type=role_arn,
            required=role_required,
            help="IAM role the pipeline's jobs run as"
            + ("" if role_required else " (default: a placeholder)"),
        )
        opts.add_argument("--bucket", help="S3 bucket for code and artifacts")
        opts.add_argument("--no-debugger", action="store_true", help="leave SageMaker Debugger out")
        security = opts.add_argument_group(
            "security (infra/dogbreed-pipeline.yaml creates the key, bucket and roles)"
        )
        security.add_argument(
            "--kms-key-id",
            metavar="KEY",
            help="KMS key (ID, ARN or alias) for job volumes and outputs and the endpoint",
        )
        security.add_argument(
            "--subnet",
            action="append",
            default=[],
            metavar="SUBNET_ID",
            help="run jobs and the model in this VPC subnet (repeatable; needs --security-group)",
        )
        security.add_argument(
            "--security-group",
            action="append",
            default=[],
            metavar="SG_ID",
            help="security group for jobs and the model (repeatable; needs --subnet)",
        )
        security.add_argument(
            "--network-isolation",
            action="store_true",
            help="no network for training and processing containers (training then needs "
            "Pretrained=false or weights given through a channel)",
        )
        security.add_argument(
            "--encrypt-inter-container-traffic",
            action="store_true",
            help="encrypt traffic between the instances of distributed training",
        )
        return opts

    export = commands.add_parser(
        "export",
        parents=[name_opt, config_opts(False)],
        help="write the pipeline definition JSON (offline)",
        description="Write the deterministic pipeline definition. Offline: no credentials or "
        "network needed.",
    )
    export.add_argument("--region", help=f"region to render (default: {_DEFAULTS.region})")
    export.add_argument("--out", type=Path, help="file to write (default: stdout)")
    export.set_defaults(handler=cmd_export)

    graph = commands.add_parser(
        "graph",
        parents=[name_opt, config_opts(False)],
        help="Mermaid flowchart of the pipeline's steps (offline)",
    )
    graph.add_argument("--region", help=f"region to render (default: {_DEFAULTS.region})")
    graph.add_argument("--out", type=Path, help="file to write (default: stdout)")
    graph.set_defaults(handler=cmd_graph)

    upsert = commands.add_parser(
        "upsert",
        parents=[name_opt, config_opts(True), aws_opts],
        help="upload the code and create or update the pipeline",
        description="Upload the code bundle (unchanged files are skipped) and create or update "
        "the pipeline with the same definition `export` writes for these flags. Prints its ARN.",
    )
    upsert.add_argument(
        "--tag",
        type=tag,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="tag the pipeline (repeatable; tags are added, never removed)",
    )
    upsert.set_defaults(handler=cmd_upsert)

    start = commands.add_parser(
        "start",
        parents=[name_opt, aws_opts],
        help="start an execution (prints its ARN)",
        description="Start an execution. --param values are checked against the deployed "
        "pipeline's parameters before anything starts.",
    )
    start.add_argument(
        "--param",
        type=key_value("--param"),
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a pipeline parameter (repeatable)",
    )
    start.add_argument("--display-name", type=execution_display_name, help="execution name")
    start.add_argument("--wait", action="store_true", help="follow the steps until it ends")
    start.add_argument(
        "--poll-interval",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="seconds between polls with --wait (default: 30)",
    )
    start.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="SECONDS",
        help="with --wait, give up waiting after this long (the execution keeps running)",
    )
    start.set_defaults(handler=cmd_start)

    status = commands.add_parser(
        "status",
        parents=[name_opt, aws_opts],
        help="an execution's status and steps (default: the latest)",
    )
    status.add_argument("execution_arn", nargs="?", metavar="EXECUTION_ARN")
    status.set_defaults(handler=cmd_status)

    schedule_opts = Parser(add_help=False)
    schedule_opts.add_argument(
        "--name",
        type=schedule_name,
        help="schedule name (default: <pipeline-name>-schedule)",
    )
    schedule_opts.add_argument(
        "--group", default="default", help="schedule group (default: default)"
    )

    schedule = commands.add_parser(
        "schedule",
        parents=[name_opt, aws_opts, schedule_opts],
        help="start the pipeline on an EventBridge Scheduler schedule",
        description="Create or update an EventBridge Scheduler schedule that starts the "
        "pipeline with its default parameters (or --param overrides).",
    )
    schedule.add_argument(
        "--cron",
        type=schedule_expression,
        required=True,
        metavar="EXPR",
        help="'cron(min hour day-of-month month day-of-week year)' (the wrapper is optional) "
        "or 'rate(N unit)', e.g. 'cron(0 3 ? * MON *)'",
    )
    schedule.add_argument(
        "--role-arn",
        type=role_arn,
        required=True,
        help="role EventBridge Scheduler assumes (trusts scheduler.amazonaws.com; may call "
        "sagemaker:StartPipelineExecution)",
    )
    schedule.add_argument("--timezone", type=timezone_name, help="IANA time zone (default: UTC)")
    schedule.add_argument(
        "--param",
        type=key_value("--param"),
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a pipeline parameter (repeatable)",
    )
    schedule.set_defaults(handler=cmd_schedule)

    unschedule = commands.add_parser(
        "unschedule",
        parents=[name_opt, aws_opts, schedule_opts],
        help="delete the schedule",
    )
    unschedule.set_defaults(handler=cmd_unschedule)

    from pipeline.local import serve_commands

    serve_commands.add_commands(commands)
    from pipeline.local import commands as local_commands  # run-local

    local_commands.add_commands(commands)
    return parser


# --------------------------------------------------------------------------- main


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
    parser = build_parser()
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
        if "botocore" not in sys.modules:
            raise
        from pipeline.errors import from_botocore

        mapped = from_botocore(exc)
        if mapped is None:
            raise
        _report(str(mapped))
        return mapped.exit_code


if __name__ == "__main__":
    sys.exit(main())
