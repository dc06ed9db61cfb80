"""The SageMaker API a local job may call, answered from the store, on 127.0.0.1.

A job script that asks SageMaker about the deployment (scripts/compare_deployed.py) runs
unchanged under `run-local`: its boto3 client reaches this server through
AWS_ENDPOINT_URL_SAGEMAKER, speaking SageMaker's own JSON protocol, so botocore serialises
the requests and parses the answers exactly as on SageMaker. It answers the read calls
that script makes, from the records the local steps wrote (endpoints.py, registry.py),
and refuses every other operation with UnknownOperationException. Nothing here writes.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pipeline.local import endpoints, registry
from pipeline.local.store import Store

log = logging.getLogger("pipeline.local")

_TARGET_PREFIX = "SageMaker."
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


class ApiError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _not_found(what: str, name) -> ApiError:
    # SageMaker's own answer to a Describe of something missing.
    return ApiError("ValidationException", f"Could not find {what} {name!r}.")


class LocalSageMaker:
    """The operations, as functions of the request body; each returns the response body."""

    def __init__(self, store: Store):
        self.store = store

    def call(self, operation: str, request: dict) -> dict:
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            raise ApiError(
                "UnknownOperationException",
                f"run-local's SageMaker API does not answer {operation}",
            )
        return handler(request)

    def _load(self, kind: str, name, what: str) -> dict:
        try:
            return endpoints.load(self.store, kind, name)
        except endpoints.EndpointError:
            raise _not_found(what, name) from None

    def op_DescribeEndpoint(self, request: dict) -> dict:  # noqa: N802 - the API's names
        name = request.get("EndpointName")
        # The name becomes a file name: only a valid endpoint name may reach the path.
        if not isinstance(name, str) or not endpoints.ENDPOINT_NAME_RE.match(name):
            raise _not_found("endpoint", name)
        path = self.store.endpoints / f"{name}.json"
        if not path.is_file():
            raise _not_found("endpoint", name)
        return json.loads(path.read_text(encoding="utf-8"))

    def op_DescribeEndpointConfig(self, request: dict) -> dict:  # noqa: N802
        name = request.get("EndpointConfigName")
        return self._load(endpoints.ENDPOINT_CONFIGS, name, "endpoint configuration")

    def op_DescribeModel(self, request: dict) -> dict:  # noqa: N802
        return self._load(endpoints.MODELS, request.get("ModelName"), "model")

    def _group_versions(self, group) -> list[dict]:
        try:
            return registry.versions(self.store.registry, str(group).rsplit("/", 1)[-1])
        except registry.RegistryError as err:
            raise ApiError("ValidationException", str(err)) from None

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

    def op_DescribeModelPackage(self, request: dict) -> dict:  # noqa: N802
        name = str(request.get("ModelPackageName") or "")
        group, _, version = name.rsplit(":model-package/", 1)[-1].partition("/")
        for record in self._group_versions(group) if version.isdigit() else []:
            if record["ModelPackageVersion"] == int(version):
                answer = dict(record)
                # The record keeps the statistics' content; the API gives their sources.
                answer["ModelMetrics"] = record.get("ModelMetricsSources") or {}
                return answer
        raise ApiError("ValidationException", f"Model package {name} not found")


def _handler_for(api: LocalSageMaker):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            target = self.headers.get("X-Amz-Target", "")
            try:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                if not target.startswith(_TARGET_PREFIX) or not isinstance(request, dict):
                    raise ApiError("SerializationException", f"not a SageMaker call: {target!r}")
                body, status = api.call(target[len(_TARGET_PREFIX) :], request), HTTPStatus.OK
            except ApiError as err:
                body = {"__type": err.code, "message": str(err)}
                status = HTTPStatus.BAD_REQUEST
            except ValueError as err:
                body = {"__type": "SerializationException", "message": str(err)}
                status = HTTPStatus.BAD_REQUEST
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", "local")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # noqa: A002 - http.server's signature
            log.debug("sagemaker api: " + format, *args)

    return Handler


class Server:
    """The API on an ephemeral port of 127.0.0.1, for as long as the `with` block runs."""

    def __init__(self, store: Store):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(LocalSageMaker(store)))
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
            "AWS_ENDPOINT_URL_SAGEMAKER": self.url,
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
