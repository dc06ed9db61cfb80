"""run-local's SageMaker API: the store's registry, endpoints, alarms and scaling, on 127.0.0.1.

pipeline.deployment's operations (register, approve, release, describe, teardown) run with
boto3 clients pointed here (`connected`), as they run with boto3's own against AWS: botocore
serialises the requests, checks them against the service models, and parses the answers
exactly as on AWS. The same server answers the three services a release calls, told apart
by their X-Amz-Target prefix: SageMaker (JSON 1.1), CloudWatch's alarms (JSON 1.0, the
protocol botocore picks for it) and Application Auto Scaling (JSON 1.1). A job script that
asks them (scripts/compare_deployed.py, scripts/release.py) reaches them through the
AWS_ENDPOINT_URL_<SERVICE> variables. Answers have the services' shapes and error codes;
every other operation is refused with UnknownOperationException. registry.py, endpoints.py,
alarms.py and scaling.py are the storage behind it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dogbreed_jobs.release import Clients
from pipeline.errors import AwsError, one_line
from pipeline.local import alarms, endpoints, registry, scaling
from pipeline.local.records import arn
from pipeline.local.store import Store, StoreError

log = logging.getLogger("pipeline.local")

# The API's own names for the records' fields: a record also holds local fields (paths,
# the execution), which a botocore client ignores as members its shapes do not have.
_SUMMARY_FIELDS = (
    "ModelPackageName",
    "ModelPackageGroupName",
    "ModelPackageVersion",
    "ModelPackageArn",
    "CreationTime",
    "ModelPackageStatus",
    "ModelApprovalStatus",
)
_CONFIG_SUMMARY_FIELDS = ("EndpointConfigName", "EndpointConfigArn", "CreationTime")


class ApiError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _not_found(what: str, name) -> ApiError:
    # SageMaker's own answer to a Describe of something missing.
    return ApiError("ValidationException", f"Could not find {what} {name!r}.")


class _Api:
    """A service's operations, as functions of the request body; each returns the response."""

    service = ""

    def __init__(self, store: Store):
        self.store = store

    def call(self, operation: str, request: dict) -> dict:
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            raise ApiError(
                "UnknownOperationException",
                f"run-local's {self.service} API does not answer {operation}",
            )
        return handler(request)


class LocalSageMaker(_Api):
    service = "SageMaker"

    def _load(self, kind: str, name) -> dict:
        return self._store(endpoints.load, kind, name)

    def op_DescribeEndpoint(self, request: dict) -> dict:  # noqa: N802 - the API's names
        return self._store(endpoints.describe, request.get("EndpointName"))

    def op_DescribeEndpointConfig(self, request: dict) -> dict:  # noqa: N802
        return self._load(endpoints.ENDPOINT_CONFIGS, request.get("EndpointConfigName"))

    def op_DescribeModel(self, request: dict) -> dict:  # noqa: N802
        return self._load(endpoints.MODELS, request.get("ModelName"))

    def _store(self, write, *args) -> dict:
        """`write(store, *args)`, its refusals as SageMaker's."""
        try:
            return write(self.store, *args)
        except endpoints.NotFound as err:
            raise ApiError("ValidationException", f"Could not find {err}.") from None
        except (endpoints.EndpointError, registry.RegistryError, StoreError) as err:
            raise ApiError("ValidationException", str(err)) from None

    def op_CreateModel(self, request: dict) -> dict:  # noqa: N802
        name = request.pop("ModelName")
        return {"ModelArn": self._store(endpoints.create_model, name, request)["ModelArn"]}

    def op_CreateEndpointConfig(self, request: dict) -> dict:  # noqa: N802
        name = request.pop("EndpointConfigName")
        config = self._store(endpoints.create_endpoint_config, name, request)
        return {"EndpointConfigArn": config["EndpointConfigArn"]}

    def _deploy(self, request: dict, *, create: bool) -> dict:
        name, config = request["EndpointName"], request["EndpointConfigName"]
        # CreateEndpoint keeps a DeploymentConfig for later updates; only an update uses it.
        deployment = None if create else request.get("DeploymentConfig")
        record = self._store(
            lambda store: endpoints.deploy(
                store, name, config, create=create, deployment=deployment
            )
        )
        return {"EndpointArn": record["EndpointArn"]}

    def op_CreateEndpoint(self, request: dict) -> dict:  # noqa: N802
        return self._deploy(request, create=True)

    def op_UpdateEndpoint(self, request: dict) -> dict:  # noqa: N802
        return self._deploy(request, create=False)

    def _delete(self, kind: str, name) -> dict:
        self._store(endpoints.delete, kind, name)
        return {}

    def op_DeleteEndpoint(self, request: dict) -> dict:  # noqa: N802
        return self._delete(endpoints.ENDPOINTS, request.get("EndpointName"))

    def op_DeleteEndpointConfig(self, request: dict) -> dict:  # noqa: N802
        return self._delete(endpoints.ENDPOINT_CONFIGS, request.get("EndpointConfigName"))

    def op_DeleteModel(self, request: dict) -> dict:  # noqa: N802
        return self._delete(endpoints.MODELS, request.get("ModelName"))

    def op_ListEndpointConfigs(self, request: dict) -> dict:  # noqa: N802
        # One page: a store holds a handful, and the paginator stops without a NextToken.
        contains = request.get("NameContains") or ""
        found = []
        for name in endpoints.names(self.store, endpoints.ENDPOINT_CONFIGS):
            if contains in name:
                config = endpoints.load(self.store, endpoints.ENDPOINT_CONFIGS, name)
                found.append({k: config[k] for k in _CONFIG_SUMMARY_FIELDS})
        return {"EndpointConfigs": found}

    def _group_versions(self, group) -> list[dict]:
        try:
            return registry.versions(self.store.registry, str(group).rsplit("/", 1)[-1])
        except registry.RegistryError as err:
            raise ApiError("ValidationException", str(err)) from None

    def op_DescribeModelPackageGroup(self, request: dict) -> dict:  # noqa: N802
        group = str(request.get("ModelPackageGroupName")).rsplit("/", 1)[-1]
        found = self._group_versions(group)
        if not found:
            raise _not_found("model package group", group)
        return {
            "ModelPackageGroupName": group,
            "ModelPackageGroupArn": arn("model-package-group", group),
            "CreationTime": found[0]["CreationTime"],
            "CreatedBy": {},
            "ModelPackageGroupStatus": "Completed",
        }

    def op_ListModelPackages(self, request: dict) -> dict:  # noqa: N802
        group = request.get("ModelPackageGroupName")
        if not group:
            raise ApiError("ValidationException", "run-local lists versions of one group only")
        found = self._group_versions(group)
        status = request.get("ModelApprovalStatus")
        if status:
            found = [v for v in found if v.get("ModelApprovalStatus") == status]
        key = "ModelPackageName" if request.get("SortBy") == "Name" else "CreationTime"
        # Versions of one group share a creation second; the version number breaks the tie.
        found.sort(key=lambda v: (str(v.get(key) or ""), v["ModelPackageVersion"]))
        if request.get("SortOrder", "Ascending") == "Descending":
            found.reverse()
        limit = request.get("MaxResults")
        if isinstance(limit, int):
            found = found[:limit]
        return {"ModelPackageSummaryList": [{k: v.get(k) for k in _SUMMARY_FIELDS} for v in found]}

    def _version(self, name) -> tuple[str, int]:
        group, _, version = str(name or "").rsplit(":model-package/", 1)[-1].partition("/")
        for record in self._group_versions(group) if version.isdigit() else []:
            if record["ModelPackageVersion"] == int(version):
                return group, record
        raise ApiError("ValidationException", f"Model package {name} not found")

    def op_DescribeModelPackage(self, request: dict) -> dict:  # noqa: N802
        _, record = self._version(request.get("ModelPackageName"))
        answer = dict(record)
        # The record keeps the statistics' content; the API gives their sources.
        answer["ModelMetrics"] = record.get("ModelMetricsSources") or {}
        return answer

    def op_UpdateModelPackage(self, request: dict) -> dict:  # noqa: N802
        group, record = self._version(request.get("ModelPackageArn"))
        status = request.get("ModelApprovalStatus")
        if status:
            number, description = record["ModelPackageVersion"], request.get("ApprovalDescription")
            self._store(
                lambda store: registry.set_status(
                    store.registry, group, number, status, description
                )
            )
        return {"ModelPackageArn": record["ModelPackageArn"]}

    def op_CreateModelPackage(self, request: dict) -> dict:  # noqa: N802
        # The execution that registers a version says so in MetadataProperties.GeneratedBy.
        execution = (request.get("MetadataProperties") or {}).get("GeneratedBy")
        group, package = self._store(registry.package_from_step, request, execution)
        record = self._store(lambda store: registry.register(store.registry, group, package))
        return {"ModelPackageArn": record["ModelPackageArn"]}


class LocalCloudWatch(_Api):
    """The alarms a release reads (DescribeAlarms) and a test or a person sets."""

    service = "CloudWatch"

    def op_DescribeAlarms(self, request: dict) -> dict:  # noqa: N802
        names = request.get("AlarmNames")
        if not names:
            raise ApiError("InvalidParameterValue", "run-local describes alarms by name only")
        kinds = request.get("AlarmTypes") or ["MetricAlarm"]
        try:
            found = alarms.describe(self.store, names)
        except alarms.AlarmError as err:
            raise ApiError("InvalidParameterValue", str(err)) from None
        return {
            "MetricAlarms": found if "MetricAlarm" in kinds else [],
            "CompositeAlarms": [],
        }

    def op_SetAlarmState(self, request: dict) -> dict:  # noqa: N802
        name = request.get("AlarmName")
        try:
            alarms.set_state(
                self.store, name, request.get("StateValue"), request.get("StateReason")
            )
        except alarms.NoAlarm as err:
            raise ApiError("ResourceNotFound", f"Could not find {err}") from None
        except alarms.AlarmError as err:
            raise ApiError("InvalidParameterValue", str(err)) from None
        return {}


class LocalAutoScaling(_Api):
    """Application Auto Scaling's targets and policies of SageMaker variants."""

    service = "Application Auto Scaling"

    def _scaling(self, operation, request: dict):
        try:
            return operation(self.store, request)
        except scaling.NoScaling as err:
            raise ApiError("ObjectNotFoundException", str(err)) from None
        except (scaling.ScalingError, endpoints.EndpointError) as err:
            raise ApiError("ValidationException", str(err)) from None

    def op_RegisterScalableTarget(self, request: dict) -> dict:  # noqa: N802
        target = self._scaling(scaling.register, request)
        return {"ScalableTargetARN": target["ScalableTargetARN"]}

    def op_DescribeScalableTargets(self, request: dict) -> dict:  # noqa: N802
        return {"ScalableTargets": self._scaling(scaling.targets, request)}

    def op_DeregisterScalableTarget(self, request: dict) -> dict:  # noqa: N802
        self._scaling(scaling.deregister, request)
        return {}

    def op_PutScalingPolicy(self, request: dict) -> dict:  # noqa: N802
        policy = self._scaling(scaling.put_policy, request)
        return {"PolicyARN": policy["PolicyARN"], "Alarms": []}

    def op_DescribeScalingPolicies(self, request: dict) -> dict:  # noqa: N802
        return {"ScalingPolicies": self._scaling(scaling.policies, request)}

    def op_DeleteScalingPolicy(self, request: dict) -> dict:  # noqa: N802
        self._scaling(scaling.delete_policy, request)
        return {}


# X-Amz-Target prefix -> (the service's API, its JSON protocol's content type).
_PROTOCOLS = {
    "SageMaker.": (LocalSageMaker, "application/x-amz-json-1.1"),
    "GraniteServiceVersion20100801.": (LocalCloudWatch, "application/x-amz-json-1.0"),
    "AnyScaleFrontendService.": (LocalAutoScaling, "application/x-amz-json-1.1"),
}


def _handler_for(store: Store):
    apis = {prefix: (api(store), kind) for prefix, (api, kind) in _PROTOCOLS.items()}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            target = self.headers.get("X-Amz-Target", "")
            prefix = next((p for p in apis if target.startswith(p)), "SageMaker.")
            api, content_type = apis[prefix]
            try:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                if not target.startswith(prefix) or not isinstance(request, dict):
                    raise ApiError(
                        "SerializationException", f"not a call run-local answers: {target!r}"
                    )
                body, status = api.call(target[len(prefix) :], request), HTTPStatus.OK
            except ApiError as err:
                body = {"__type": err.code, "message": str(err)}
                status = HTTPStatus.BAD_REQUEST
            except ValueError as err:
                body = {"__type": "SerializationException", "message": str(err)}
                status = HTTPStatus.BAD_REQUEST
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", "local")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # noqa: A002 - http.server's signature
            log.debug("sagemaker api: " + format, *args)

    return Handler


# The variable that points a job's boto3 client of each service here.
ENDPOINT_VARIABLES = {
    "sagemaker": "AWS_ENDPOINT_URL_SAGEMAKER",
    "cloudwatch": "AWS_ENDPOINT_URL_CLOUDWATCH",
    "application-autoscaling": "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING",
}


class Server:
    """The API on an ephemeral port of 127.0.0.1, for as long as the `with` block runs."""

    def __init__(self, store: Store):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(store))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-sagemaker-api", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def environment(self) -> dict[str, str | None]:
        """A job's environment for calling it (None: unset): the endpoint, inert credentials.

        A local job must never reach a real account with the user's own credentials, so the
        profile and session token go, and nothing may switch the endpoint variable off.
        """
        return {
            **{variable: self.url for variable in ENDPOINT_VARIABLES.values()},
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": None,
            "AWS_ACCESS_KEY_ID": "local-runner",
            "AWS_SECRET_ACCESS_KEY": "local-runner",  # noqa: S105 # nosec B105 - inert
            "AWS_SESSION_TOKEN": None,
            "AWS_PROFILE": None,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def __enter__(self) -> Server:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def client(url: str, service: str = "sagemaker"):
    """A boto3 client of the API at `url`, with inert credentials and no retries.

    The endpoint and keys are explicit, so a local call never reaches a real account with the
    user's credentials, and a refusal is final at once (no retries).
    """
    import botocore.session
    from botocore.config import Config

    session = botocore.session.Session()
    return session.create_client(
        service,
        region_name="local",
        endpoint_url=url,
        aws_access_key_id="local-runner",
        aws_secret_access_key="local-runner",  # noqa: S106 # nosec B106 - inert
        config=Config(retries={"total_max_attempts": 1}),
    )


def clients(url: str) -> Clients:
    """The SageMaker, CloudWatch and Application Auto Scaling clients of the API at `url`."""
    return Clients(*(client(url, service) for service in ENDPOINT_VARIABLES))


@contextlib.contextmanager
def connected(store: Store) -> Iterator[Clients]:
    """The clients of the store's API, for as long as the `with` block runs.

    botocore reports an answer it cannot parse (a record with a damaged time stamp) as a
    bare ValueError: it becomes one line naming the API, as the CLI's other errors are.
    """
    with Server(store) as api:
        try:
            yield clients(api.url)
        except ValueError as err:
            raise AwsError(f"run-local's SageMaker API ({store.root}): {one_line(err)}") from None


@contextlib.contextmanager
def job_client(environment: dict) -> Iterator:
    """The client of a running execution's API (`environment` holds Server.environment()).

    For run-local's steps, whose failures are one-line reasons: a refused call, or an
    answer botocore cannot parse (a ValueError), raises EndpointError in one line.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield client(environment["AWS_ENDPOINT_URL_SAGEMAKER"])
    except (ClientError, BotoCoreError, ValueError) as err:
        raise endpoints.EndpointError(one_line(str(err))) from None
