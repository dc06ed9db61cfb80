"""`approve`: approve and deploy, or reject, a registered model version.

pipeline.deployment.approve, against SageMaker or, with --store, against run-local's
SageMaker API over the store. Every check runs before anything changes, so a refused
approval leaves the version's status and the endpoint as they were.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pipeline.cli.argtypes as argtypes
import pipeline.cli.options as options
from pipeline import deployment
from pipeline.cli.pipelines import connect
from pipeline.config import DEFAULT_ENDPOINT_NAME, alarm_names
from pipeline.parameter_specs import SPECS

log = logging.getLogger("pipeline.cli")

DEFAULT_TIMEOUT = 3600.0


# --flag -> the Settings field it overrides (the pipeline's parameter of the same meaning).
CAPACITY_FLAGS = {
    "instance_count": "EndpointInstanceCount",
    "min_instances": "EndpointMinInstances",
    "max_instances": "EndpointMaxInstances",
    "invocations_target": "InvocationsPerInstanceTarget",
    "bake_seconds": "EndpointBakeSeconds",
}


def _capacity(args) -> dict:
    given = {field: getattr(args, field) for field in CAPACITY_FLAGS}
    return {field: value for field, value in given.items() if value is not None}


def approve(args) -> int:
    ask = deployment.Approval(
        version=args.model_version,
        reject=args.reject,
        reason=args.reason,
        deploy=not args.no_deploy,
        wait=not args.no_wait,
        timeout=args.timeout,
    )
    if args.store is None:
        client = connect(args)
        settings = deployment.pipeline_settings(
            client,
            args.pipeline_name,
            group=args.model_package_group,
            endpoint_name=args.endpoint,
            instance_type=args.instance_type,
            **_capacity(args),
        )
        arn, _ = deployment.approve(client.release_clients(), settings, ask)
    else:
        from pipeline.local import alarms, sagemaker_api
        from pipeline.local.store import Store

        # run-local keeps no upserted pipeline to read the settings from: the defaults, and
        # without --instance-type the endpoint keeps the type it runs on.
        settings = deployment.Settings(
            group=args.model_package_group or options.DEFAULTS.model_package_group,
            endpoint_name=args.endpoint or DEFAULT_ENDPOINT_NAME,
            instance_type=args.instance_type,
            role_arn=options.DEFAULTS.role_arn,
        )
        settings = dataclasses.replace(settings, **_capacity(args))
        store = Store(args.store)
        # The local stand-in for infra/'s alarms (pipeline/local/alarms.py).
        name = settings.endpoint_name
        alarms.ensure(store, name, alarm_names(name))
        with sagemaker_api.connected(store) as clients:
            arn, deployed = deployment.approve(clients, settings, ask)
        if deployed:
            log.info(
                "`%s serve-local --store %s` serves endpoint %s",
                options.PROG,
                store.root,
                settings.endpoint_name,
            )
    print(arn)
    return 0


def add_approve(parser) -> None:
    parser.description = (
        "Approve a registered model version and deploy it as the pipeline's DeployEndpoint "
        "step does (a new endpoint configuration; the endpoint is created, or updated "
        "blue/green with automatic rollback on its CloudWatch alarms, and waited for; "
        "autoscaling is then set from the pipeline's parameters: a rollback leaves the old "
        "configuration serving, and names the alarm), or reject it. Executions run "
        "with ModelApprovalStatus=PendingManualApproval register and stop "
        "there, for this command. With --store, the same in run-local's "
        "registry and endpoints."
    )
    parser.add_argument(
        "--model-version",
        required=True,
        metavar="N|ARN",
        help="the version number in the model package group, or its model package ARN",
    )
    parser.add_argument("--reject", action="store_true", help="reject the version instead")
    parser.add_argument("--reason", metavar="TEXT", help="why: the version's ApprovalDescription")
    parser.add_argument(
        "--endpoint",
        type=argtypes.endpoint_name,
        help="the endpoint to deploy to (default: the pipeline's EndpointName default, "
        f"{DEFAULT_ENDPOINT_NAME})",
    )
    parser.add_argument(
        "--model-package-group",
        type=argtypes.pipeline_name,
        metavar="NAME",
        help="the group (default: the one the pipeline registers to, "
        f"{options.DEFAULTS.model_package_group})",
    )
    parser.add_argument(
        "--instance-type",
        help="endpoint instance type (default: the pipeline's EndpointInstanceType default; "
        "with --store, the endpoint's current type)",
    )
    for field, parameter in CAPACITY_FLAGS.items():
        spec = SPECS[parameter]
        parser.add_argument(
            f"--{field.replace('_', '-')}",
            type=float if isinstance(spec.default, float) else int,
            metavar="N",
            help=f"{spec.meaning} (default: the pipeline's {parameter} default, {spec.default})",
        )
    parser.add_argument("--no-deploy", action="store_true", help="approve only")
    parser.add_argument(
        "--no-wait", action="store_true", help="return once the endpoint change has started"
    )
    parser.add_argument(
        "--timeout",
        type=argtypes.positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for InService (default: {DEFAULT_TIMEOUT:.0f})",
    )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        help="approve in this run-local store instead of on SageMaker",
    )
    options.add_pipeline_name(parser)
    options.add_aws(parser)
    parser.set_defaults(handler=approve)


PARSERS = {"approve": add_approve}
