"""Errors the CLI reports as one line, and the mapping of botocore errors onto them.

A `UsageError` is something the user can fix (bad input, missing credentials, a missing
bucket, a permission): the CLI prints its message and exits 2. An `ExecutionFailed` is a
pipeline execution that ended Failed or Stopped (exit 1). `AwsError` is AWS failing for
reasons outside the user's input (throttling after every retry, an internal error): exit 1.
Anything else is a bug and keeps its traceback.

botocore is imported inside `from_botocore` only, so importing this module stays cheap
(`dogbreed-pipeline --help` must not pay for boto3).
"""

from __future__ import annotations

import re


class CliError(Exception):
    """An error the CLI reports as `dogbreed-pipeline: error: <message>`."""

    exit_code = 1


class UsageError(CliError):
    """Bad input or environment the user can fix: exit code 2."""

    exit_code = 2


class ExecutionFailed(CliError):
    """A pipeline execution ended Failed or Stopped."""

    exit_code = 1


class AwsError(CliError):
    """AWS failed for a reason outside the user's input."""

    exit_code = 1


_ACCESS_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "403",  # HEAD requests carry no error body: S3 reports the bare status.
}
_BAD_CREDENTIALS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AuthFailure",
    "InvalidToken",
}
# botocore's throttling error codes (botocore.retries.standard), the ones it retries.
_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
}
_REJECTED = {"ValidationException", "ValidationError", "InvalidParameterValue", "ConflictException"}
_NOT_FOUND = {"ResourceNotFound", "ResourceNotFoundException", "NoSuchBucket", "NoSuchKey", "404"}

# The IAM action behind operations whose AccessDenied message does not name one (S3's).
_S3_ACTIONS = {
    "HeadBucket": "s3:ListBucket",
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
}
_ACTION_IN_MESSAGE = re.compile(r"perform:\s*([A-Za-z0-9-]+:[A-Za-z0-9*]+)")

# Never echo anything that looks like a credential, whatever AWS put in a message.
_SECRETS = [
    (re.compile(r"\b(AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b"), "<redacted>"),
    (
        re.compile(r"(?i)(security[-_ ]?token|signature|secret[-_ ]?access[-_ ]?key)([=:]\s*)\S+"),
        r"\1\2<redacted>",
    ),
    (re.compile(r"(?i)(Credential=)\S+"), r"\1<redacted>"),
]

NO_CREDENTIALS_HINT = (
    "set AWS_PROFILE (or pass --profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
    "or run `aws configure` / `aws sso login`"
)
NO_REGION = "no AWS region: pass --region or set AWS_REGION (e.g. us-east-1)"


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def one_line(text: str) -> str:
    return redact(" ".join(str(text).split()))


def access_denied_action(operation: str, message: str) -> str:
    """The IAM action an AccessDenied error is about, as `service:Action`."""
    found = _ACTION_IN_MESSAGE.search(message or "")
    if found:
        return found.group(1)
    return _S3_ACTIONS.get(operation, operation)


def from_botocore(exc: BaseException) -> CliError | None:
    """The one-line CliError for a botocore exception, or None when it is not botocore's."""
    from botocore import exceptions as bce

    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return UsageError(f"no AWS credentials found: {NO_CREDENTIALS_HINT}")
    if isinstance(exc, bce.ProfileNotFound):
        return UsageError(
            f"{one_line(exc)}: check AWS_PROFILE / --profile against ~/.aws/config "
            "(`aws configure list-profiles` lists them)"
        )
    if isinstance(exc, bce.TokenRetrievalError | bce.SSOError | bce.UnauthorizedSSOTokenError):
        return UsageError(f"AWS SSO login needed or expired: run `aws sso login` ({one_line(exc)})")
    if isinstance(exc, bce.CredentialRetrievalError):
        return UsageError(
            f"could not load AWS credentials ({one_line(exc)}): {NO_CREDENTIALS_HINT}"
        )
    if isinstance(exc, bce.NoRegionError):
        return UsageError(NO_REGION)
    if isinstance(exc, bce.EndpointConnectionError | bce.ConnectTimeoutError):
        return UsageError(
            f"cannot reach {exc.kwargs.get('endpoint_url', 'the AWS endpoint')}: check --region / "
            "AWS_REGION (is the service offered there?), AWS_ENDPOINT_URL and your network"
        )
    if isinstance(exc, bce.ParamValidationError):
        return UsageError(one_line(exc.kwargs.get("report", exc)))
    if isinstance(exc, bce.ClientError):
        return _from_client_error(exc)
    if isinstance(exc, bce.BotoCoreError):
        return AwsError(one_line(exc))
    return None


def _from_client_error(exc) -> CliError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = one_line(error.get("Message") or "")
    operation = exc.operation_name
    if code in _ACCESS_DENIED:
        action = access_denied_action(operation, message)
        return UsageError(
            f"access denied: your AWS identity may not call {action} ({operation}); "
            f"attach an IAM policy that allows {action}, or use a profile that has it"
        )
    if code in _BAD_CREDENTIALS:
        return UsageError(
            f"AWS rejected the credentials ({code}): they are expired or invalid, or the region "
            f"is an opt-in region not enabled for the account; refresh them ({NO_CREDENTIALS_HINT})"
        )
    if code in _NOT_FOUND:
        return UsageError(f"{operation}: not found ({code}){': ' + message if message else ''}")
    if code in {
        "ValidationException",
        "ValidationError",
        "InvalidParameterValue",
        "ConflictException",
    }:
        return UsageError(f"{operation} rejected: {message or code}")
    if code in _THROTTLED:
        # botocore has retried already (standard mode): say how often, and the knob.
        attempts = (exc.response.get("ResponseMetadata") or {}).get("RetryAttempts", 0) + 1
        return AwsError(
            f"AWS throttled {operation} ({code}: {message or 'no message'}) on all {attempts} "
            "attempts; retry later, or allow more with AWS_MAX_ATTEMPTS"
        )
    return AwsError(f"AWS {operation} failed ({code}): {message or 'no message'}; retry later")
