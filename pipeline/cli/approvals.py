"""`approve`: approve and deploy, or reject, a registered model version.

On SageMaker (pipeline.deployment) or, with --store, in run-local's registry and endpoints.
Every check runs before anything changes, so a refused approval leaves the version's status
and the endpoint as they were.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pipeline.cli.argtypes as argtypes
import pipeline.cli.options as options
from pipeline import deployment
from pipeline.cli.pipelines import connect
from pipeline.config import DEFAULT_ENDPOINT_NAME
from pipeline.errors import UsageError

log = logging.getLogger("pipeline.cli")

DEFAULT_TIMEOUT = 3600.0


def approve(args) -> int:
    if args.store is not None:
        return _approve_local(args)
    client = connect(args)
    settings = deployment.pipeline_settings(
        client,
        args.pipeline_name,
        group=args.model_package_group,
        endpoint_name=args.endpoint,
        instance_type=args.instance_type,
    )
    arn = deployment.package_arn(client, settings.group, args.model_version)
    package = deployment.describe_version(client, arn)
    version = package.get("ModelPackageVersion") or int(arn.rsplit("/", 1)[-1])
    model_data = deployment.package_container(package).get("ModelDataUrl")
    if args.reject:
        deployment.set_approval(client, arn, "Rejected", args.reason)
        log.info("rejected %s version %d", settings.group, version)
        endpoint = deployment.describe_endpoint(client, settings.endpoint_name)
        if endpoint and deployment.served_model_data(client, endpoint) == model_data:
            log.warning(
                "endpoint %s still serves it: approve another version, or `%s teardown`",
                settings.endpoint_name,
                options.PROG,
            )
        print(arn)
        return 0
    endpoint = None
    if not args.no_deploy:
        endpoint = deployment.describe_endpoint(client, settings.endpoint_name)
        deployment.check_endpoint(endpoint, settings.endpoint_name)
    deployment.set_approval(client, arn, "Approved", args.reason)
    log.info(
        "approved %s version %d (was %s)", settings.group, version, package["ModelApprovalStatus"]
    )
    if args.no_deploy:
        print(arn)
        return 0
    if endpoint and deployment.served_model_data(client, endpoint) == model_data:
        log.info(
            "endpoint %s already serves %s: nothing to deploy", settings.endpoint_name, model_data
        )
        print(arn)
        return 0
    model, config = deployment.new_names(settings.endpoint_name, version)
    deployment.create_model(client, package, settings, model)
    deployment.create_endpoint_config(client, settings, model, config)
    deployment.switch_endpoint(client, endpoint, settings.endpoint_name, config)
    log.info(
        "%s endpoint %s with %s (model %s, %s)",
        "updating" if endpoint else "creating",
        settings.endpoint_name,
        config,
        model,
        settings.instance_type,
    )
    if not args.no_wait:
        previous = endpoint.get("EndpointConfigName") if endpoint else None
        deployment.wait_in_service(client, settings.endpoint_name, config, previous, args.timeout)
        log.info("endpoint %s is InService with version %d", settings.endpoint_name, version)
    print(arn)
    return 0


def _approve_local(args) -> int:
    from pipeline.local import endpoints, registry
    from pipeline.local.store import Store

    store = Store(args.store)
    group = args.model_package_group or options.DEFAULTS.model_package_group
    number = deployment.version_number(args.model_version, group)
    endpoint_name = args.endpoint or DEFAULT_ENDPOINT_NAME
    try:
        record = registry.version(store.registry, group, number)
        if args.reject:
            record = registry.set_status(store.registry, group, number, "Rejected", args.reason)
            log.info("rejected %s version %d in %s", group, number, store.root)
            print(record["ModelPackageArn"])
            return 0
        endpoint_path = store.endpoints / f"{endpoint_name}.json"
        endpoint = None
        if not args.no_deploy and endpoint_path.is_file():
            endpoint = json.loads(endpoint_path.read_text(encoding="utf-8"))
            deployment.check_endpoint(endpoint, endpoint_name, endpoints.is_pipeline_config)
        previous = record["ModelApprovalStatus"]
        record = registry.set_status(store.registry, group, number, "Approved", args.reason)
        log.info("approved %s version %d (was %s) in %s", group, number, previous, store.root)
        if args.no_deploy:
            pass
        elif endpoint and endpoint.get("ModelDataUrl") == record.get("ModelDataUrl"):
            log.info("endpoint %s already serves %s", endpoint_name, record.get("ModelDataUrl"))
        else:
            model, config = deployment.new_names(endpoint_name, number)
            _, created = endpoints.deploy_package(
                store,
                deployment.deployable_container(record),
                endpoint_name=endpoint_name,
                config_name=config,
                model_name=model,
                # Without --instance-type the endpoint keeps the type it runs on.
                instance_type=args.instance_type or (endpoint or {}).get("InstanceType"),
                execution_arn=record.get("ExecutionArn"),
            )
            log.info(
                "%s endpoint %s with %s (`%s serve-local --store %s` serves it)",
                "created" if created else "updated",
                endpoint_name,
                config,
                options.PROG,
                store.root,
            )
    except (registry.RegistryError, endpoints.EndpointError) as err:
        raise UsageError(f"{err} (in {store.root})") from None
    print(record["ModelPackageArn"])
    return 0


def add_approve(parser) -> None:
    parser.description = (
        "Approve a registered model version and deploy it as the pipeline's deploy steps do "
        "(a new endpoint configuration; the endpoint is created or updated, and waited for "
        "until InService: a failed update leaves the old configuration serving, and says "
        "so), or reject it. Executions run with ModelApprovalStatus=PendingManualApproval "
        "register and stop there, for this command. With --store, the same in run-local's "
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
