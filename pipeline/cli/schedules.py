"""`schedule` and `unschedule`: start the pipeline from EventBridge Scheduler."""

from __future__ import annotations

import argparse
import logging

import pipeline.cli.argtypes as argtypes
import pipeline.cli.options as options
from pipeline import aws, parameter_values
from pipeline.cli.pipelines import connect
from pipeline.errors import UsageError

log = logging.getLogger("pipeline.cli")


def _schedule_name(args) -> str:
    name = args.name or f"{args.pipeline_name}-schedule"
    try:
        return argtypes.schedule_name(name)
    except argparse.ArgumentTypeError:
        raise UsageError(
            f"{name!r} is too long or malformed for a schedule name: pass --name (1-64 letters, "
            "digits and - _ .)"
        ) from None


def schedule(args) -> int:
    name = _schedule_name(args)
    client = connect(args)
    pipeline = aws.describe_pipeline(client, args.pipeline_name)
    definition = pipeline["Definition"]
    values = parameter_values.check(definition, args.param, args.pipeline_name)
    missing = parameter_values.without_default(definition, values)
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
        parameters=parameter_values.pipeline_parameters(values),
        description=f"Starts SageMaker pipeline {args.pipeline_name} ({options.PROG} schedule)",
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


def unschedule(args) -> int:
    name = _schedule_name(args)
    client = connect(args)
    if aws.delete_schedule(client, name=name, group=args.group):
        log.info("deleted schedule %s", name)
    else:
        log.warning(
            "no schedule %r in group %r (%s): nothing to remove", name, args.group, client.region
        )
    return 0


def _add_common(parser) -> None:
    options.add_pipeline_name(parser)
    options.add_aws(parser)
    parser.add_argument(
        "--name",
        type=argtypes.schedule_name,
        help="schedule name (default: <pipeline-name>-schedule)",
    )
    parser.add_argument("--group", default="default", help="schedule group (default: default)")


def add_schedule(parser) -> None:
    parser.description = (
        "Create or update an EventBridge Scheduler schedule that starts the pipeline with its "
        "default parameters (or --param overrides)."
    )
    _add_common(parser)
    parser.add_argument(
        "--cron",
        type=argtypes.schedule_expression,
        required=True,
        metavar="EXPR",
        help="'cron(min hour day-of-month month day-of-week year)' (the wrapper is optional) "
        "or 'rate(N unit)', e.g. 'cron(0 3 ? * MON *)'",
    )
    parser.add_argument(
        "--role-arn",
        type=argtypes.role_arn,
        required=True,
        help="role EventBridge Scheduler assumes (trusts scheduler.amazonaws.com; may call "
        "sagemaker:StartPipelineExecution)",
    )
    parser.add_argument(
        "--timezone", type=argtypes.timezone_name, help="IANA time zone (default: UTC)"
    )
    options.add_params(parser)
    parser.set_defaults(handler=schedule)


def add_unschedule(parser) -> None:
    _add_common(parser)
    parser.set_defaults(handler=unschedule)


PARSERS = {"schedule": add_schedule, "unschedule": add_unschedule}
