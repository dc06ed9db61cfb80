"""`teardown`: stop paying for what the pipeline deployed on SageMaker (or, with --store,
clear what run-local deployed): pipeline.deployment's teardown against either."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pipeline.cli.argtypes as argtypes
import pipeline.cli.options as options
from pipeline import aws, deployment
from pipeline.cli.pipelines import connect
from pipeline.config import DEFAULT_ENDPOINT_NAME
from pipeline.errors import UsageError

log = logging.getLogger("pipeline.cli")


def _confirmed() -> bool:
    if not sys.stdin.isatty():
        raise UsageError("teardown deletes what is listed above: pass --yes (no terminal to ask)")
    answer = input("Delete them? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def teardown(args) -> int:
    if args.store is None:
        client = connect(args)
        if _teardown(client.release_clients(), args, f"in {client.region}"):
            return 1
        if args.schedule:
            name = f"{args.pipeline_name}-schedule"
            if aws.delete_schedule(client, name=name, group="default"):
                log.info("deleted schedule %s", name)
            else:
                log.info("no schedule %s to delete", name)
        return 0
    from pipeline.local import sagemaker_api
    from pipeline.local.store import Store

    if args.schedule:
        raise UsageError("--schedule: run-local has no schedules (run it from cron instead)")
    store = Store(args.store)
    with sagemaker_api.connected(store) as clients:
        return _teardown(clients, args, f"in {store.root}")


def _teardown(clients, args, where: str) -> int:
    resources = deployment.endpoint_resources(clients, args.endpoint)
    if resources.empty:
        log.info(
            "nothing to delete: no endpoint %s and no configuration or model the pipeline "
            "made for it %s",
            args.endpoint,
            where,
        )
        return 0
    if resources.endpoint:
        log.info("endpoint %s (billed while it exists)", resources.endpoint)
    for name in resources.configs:
        log.info("endpoint configuration %s", name)
    for name in resources.models:
        log.info("model %s", name)
    for name in resources.scaling:
        log.info(name)
    if not args.yes and not _confirmed():
        log.warning("not confirmed: nothing deleted")
        return 1
    deployment.delete_endpoint_resources(clients, resources)
    return 0


def add_teardown(parser) -> None:
    parser.description = (
        "Delete the endpoint the pipeline deployed (its autoscaling policy and scalable target "
        "first), every endpoint configuration the pipeline made for it (<EndpointName>-"
        "<execution id>) and their models; the auto-rollback alarms stay with infra/'s "
        "stack. Asks first unless --yes; an endpoint serving a configuration of another "
        "naming is refused."
    )
    options.add_pipeline_name(parser)
    options.add_aws(parser)
    parser.add_argument(
        "--endpoint",
        type=argtypes.endpoint_name,
        default=DEFAULT_ENDPOINT_NAME,
        help=f"the endpoint (default: {DEFAULT_ENDPOINT_NAME}, the EndpointName parameter's)",
    )
    parser.add_argument("--yes", action="store_true", help="delete without asking")
    parser.add_argument(
        "--schedule",
        action="store_true",
        help="also delete the schedule `schedule` created (<pipeline-name>-schedule)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        help="delete what run-local deployed in this store instead of on SageMaker",
    )
    parser.set_defaults(handler=teardown)


PARSERS = {"teardown": add_teardown}
