"""`upsert`, `start` and `status`: the pipeline and its executions on SageMaker."""

from __future__ import annotations

import datetime
import logging

import pipeline.cli.argtypes as argtypes
import pipeline.cli.options as options
from pipeline import aws, deployment, parameter_values, quotas
from pipeline.bundle import Bundle
from pipeline.cli.build import definition_json
from pipeline.definition import DESCRIPTION
from pipeline.errors import CliError, UsageError, one_line

log = logging.getLogger("pipeline.cli")


def connect(args) -> aws.Aws:
    return aws.connect(region=args.region, profile=args.profile)


def upsert(args) -> int:
    client = connect(args)
    bucket, owner = aws.bucket_or_default(client, args.bucket)
    config = options.config_from(args, region=client.region, bucket=bucket)
    # Cheap checks first: the definition takes seconds to build.
    aws.check_bucket(client, config.bucket, expected_owner=owner)
    bundle = Bundle.from_dir()
    log.info("building the definition for %s in %s", config.pipeline_name, config.region)
    text = definition_json(config)
    uploaded, skipped = aws.upload_objects(client, config.bucket, bundle.objects(config))
    log.info("code bundle %s: %d uploaded, %d already there", bundle.sha256[:16], uploaded, skipped)
    arn, created = aws.upsert_pipeline(
        client,
        config,
        text,
        description=f"{DESCRIPTION} Code bundle sha256:{bundle.sha256[:16]}.",
        tags=args.tag,
    )
    log.info("%s %s", "created" if created else "updated", arn)
    print(arn)
    return 0


def start(args) -> int:
    client = connect(args)
    pipeline = aws.describe_pipeline(client, args.pipeline_name)
    definition = pipeline["Definition"]
    values = parameter_values.check(definition, args.param, args.pipeline_name)
    if not args.skip_quota_check:
        quotas.check(client, quotas.needs(parameter_values.with_defaults(definition, values)))
    arn = aws.start_execution(
        client,
        args.pipeline_name,
        parameter_values.pipeline_parameters(values),
        args.display_name,
    )
    print(arn, flush=True)
    return _wait(client, arn, args) if args.wait else 0


def _when(value) -> str:
    """A timestamp in UTC, to the second (botocore's are time-zone aware)."""
    if not hasattr(value, "astimezone"):
        return "-"
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _execution(args) -> tuple[aws.Aws, str]:
    """The client and the execution ARN a command is about: the one given, else the latest."""
    if args.execution_arn:
        match = aws.EXECUTION_ARN_RE.match(args.execution_arn)
        if not match:
            raise UsageError(
                f"{args.execution_arn!r} is not a pipeline execution ARN (arn:aws:sagemaker:"
                "<region>:<account>:pipeline/<name>/execution/<id>)"
            )
        if args.region is None:
            args.region = match.group("region")
    client = connect(args)
    return client, args.execution_arn or aws.latest_execution_arn(client, args.pipeline_name)


def _wait(client: aws.Aws, arn: str, args) -> int:
    try:
        aws.wait_for_execution(client, arn, interval=args.poll_interval, timeout=args.timeout)
    except KeyboardInterrupt:
        log.warning("stopped waiting; the execution keeps running: %s status %s", options.PROG, arn)
        return 130
    return 0


def stop(args) -> int:
    client, arn = _execution(args)
    before = aws.stop_execution(client, arn)
    if before == "Stopping":
        log.warning("execution %s is already stopping", arn)
    else:
        log.info("stopping %s (running steps are stopped; `status` shows when it has)", arn)
    print(arn)
    return 0


def retry(args) -> int:
    client, arn = _execution(args)
    arn = aws.retry_execution(client, arn)
    log.info("retrying %s from its failed steps", arn)
    print(arn, flush=True)
    return _wait(client, arn, args) if args.wait else 0


def status(args) -> int:
    client, arn = _execution(args)
    execution = aws.describe_execution(client, arn)
    steps = aws.listed_steps(client, arn)
    lines = [
        f"Execution  {arn}",
        f"Name       {execution.get('PipelineExecutionDisplayName') or '-'}",
        f"Status     {execution['PipelineExecutionStatus']}",
        f"Started    {_when(execution.get('CreationTime'))}",
        f"Updated    {_when(execution.get('LastModifiedTime'))}",
    ]
    if execution.get("FailureReason"):
        lines.append(f"Reason     {' '.join(execution['FailureReason'].split())}")
    lines.append(f"Serving    {_serving(client, args.pipeline_name)}")
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
    print(options.table(rows) if len(rows) > 1 else "(no steps yet)")
    hint = aws.debugger_hint(
        [execution.get("FailureReason"), *(step.get("FailureReason") for step in steps)]
    )
    if hint:
        print(f"\nHint: {hint}")
    return 0


def _serving(client: aws.Aws, pipeline_name: str) -> str:
    """Which version the pipeline's endpoint serves; what stopped us from knowing, else."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        settings = deployment.pipeline_settings(client, pipeline_name)
        found = deployment.serving(client.sagemaker, settings.group, settings.endpoint_name)
    except (CliError, ClientError, BotoCoreError) as err:
        # The execution's status is what was asked for: this line must not fail it.
        return f"not known ({one_line(str(err))})"
    return deployment.describe_serving(found, settings.group, settings.endpoint_name)


def add_upsert(parser) -> None:
    parser.description = (
        "Upload the code bundle (unchanged files are skipped) and create or update the "
        "pipeline with the same definition `export` writes for these flags. Prints its ARN."
    )
    options.add_pipeline_name(parser)
    options.add_config(parser, role_required=True)
    options.add_aws(parser)
    parser.add_argument(
        "--tag",
        type=argtypes.tag,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="tag the pipeline (repeatable; tags are added, never removed)",
    )
    parser.set_defaults(handler=upsert)


def add_start(parser) -> None:
    parser.description = (
        "Start an execution. --param values are checked against the deployed pipeline's "
        "parameters before anything starts."
    )
    options.add_pipeline_name(parser)
    options.add_aws(parser)
    options.add_params(parser)
    parser.add_argument(
        "--display-name", type=argtypes.execution_display_name, help="execution name"
    )
    parser.add_argument(
        "--skip-quota-check",
        action="store_true",
        help="start without comparing the account's SageMaker quotas (Service Quotas) with "
        "the instances the execution will use",
    )
    _add_wait(parser)
    parser.set_defaults(handler=start)


def _add_wait(parser) -> None:
    parser.add_argument("--wait", action="store_true", help="follow the steps until it ends")
    parser.add_argument(
        "--poll-interval",
        type=argtypes.positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="seconds between polls with --wait (default: 30)",
    )
    parser.add_argument(
        "--timeout",
        type=argtypes.positive_seconds,
        metavar="SECONDS",
        help="with --wait, give up waiting after this long (the execution keeps running)",
    )


def _add_execution(parser, handler) -> None:
    options.add_pipeline_name(parser)
    options.add_aws(parser)
    parser.add_argument(
        "execution_arn",
        nargs="?",
        metavar="EXECUTION_ARN",
        help="the execution (default: the pipeline's latest)",
    )
    parser.set_defaults(handler=handler)


def add_status(parser) -> None:
    _add_execution(parser, status)


def add_stop(parser) -> None:
    parser.description = (
        "Stop an Executing execution (StopPipelineExecution): its running jobs are stopped and "
        "no further step starts. A finished execution is refused with nothing changed."
    )
    _add_execution(parser, stop)


def add_retry(parser) -> None:
    parser.description = (
        "Run a Failed execution again from the steps that failed, under the same execution "
        "ARN (RetryPipelineExecution). Any other status is refused with nothing changed."
    )
    _add_execution(parser, retry)
    _add_wait(parser)


PARSERS = {
    "upsert": add_upsert,
    "start": add_start,
    "status": add_status,
    "stop": add_stop,
    "retry": add_retry,
}
