"""No AWS credential ever reaches stdout, stderr or a log record, even at -v and on errors.

The CLI runs in-process against moto's server (AWS_ENDPOINT_URL) with distinctive credentials
in the environment; errors real AWS returns but moto does not (AccessDenied, expired tokens,
messages that quote the access key id, as STS and S3 do) are injected as AWS-shaped answers.
Everything printed and every log record, from our loggers and botocore's alike, is searched
for the key id, the secret and the session token.
"""

from __future__ import annotations

import logging
import urllib.request

import boto3
import pytest
from helpers.awsfakes import ACCOUNT, DEFAULT_BUCKET, REGION, ROLE, aws_error
from PIL import Image

from pipeline import cli

KEY_ID = "AKIAFUZZSECRET0KEY1D"
SECRET = "fuzzSecretAccessKey/DoNotPrint+0123456789abcdefXYZ"
TOKEN = "FwoGZXIvYXdzEFUZZSESSIONTOKENdoNotPrint//////////wEaDFuzzToken0123456789=="
CREDENTIALS = (KEY_ID, SECRET, TOKEN)


@pytest.fixture
def secret_env(aws_env, moto_server):
    """aws_env with distinctive credentials and a session token, pointed at moto's server."""
    urllib.request.urlopen(
        urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    ).close()
    aws_env.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    aws_env.setenv("AWS_SESSION_TOKEN", TOKEN)
    aws_env.setenv("AWS_ENDPOINT_URL", moto_server)
    boto3.client("s3", region_name=REGION, endpoint_url=moto_server).create_bucket(
        Bucket=DEFAULT_BUCKET
    )
    return aws_env


@pytest.fixture
def cli_run(secret_env, capsys, caplog):
    """Run the CLI at -v; assert no credential in its stdout, stderr or any log record."""
    caplog.set_level(logging.DEBUG)

    def run(*argv):
        try:
            code = cli.main(["-v", *argv])
        except SystemExit as exit_:  # argparse: --help and usage errors
            code = exit_.code
        out, err = capsys.readouterr()
        logged = "\n".join(
            f"{record.getMessage()} {record.exc_text or ''}" for record in caplog.records
        )
        caplog.clear()
        for name, text in (("stdout", out), ("stderr", err), ("log", logged)):
            for credential in CREDENTIALS:
                assert credential not in text, f"{argv}: a credential in {name}:\n{text}"
        return code, out, err

    return run


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "dog.jpg"
    Image.new("RGB", (8, 8), (120, 80, 40)).save(path)
    return str(path)


def test_export_upsert_start_and_status_print_no_credential(
    cli_run,
    definitions,  # noqa: F811
    calls,
    tmp_path,
):
    code, _, err = cli_run(
        "export", "--out", str(tmp_path / "d.json"), "--role-arn", ROLE, "--bucket", DEFAULT_BUCKET
    )
    assert code == 0, err
    code, out, err = cli_run("upsert", "--role-arn", ROLE)
    assert code == 0, err
    assert out.startswith("arn:aws:sagemaker:")
    code, out, err = cli_run("start")
    assert code == 0, err
    # moto has no ListPipelineExecutionSteps: whatever status makes of that, it leaks nothing.
    cli_run("status")
    calls.stubs["UpdatePipeline"] = lambda params: aws_error(*ERRORS["access denied"])
    code, out, err = cli_run("upsert", "--role-arn", ROLE)
    assert code == 2 and "access denied" in err


# Error messages that quote the key id, as STS and S3 do; redaction must catch them.
QUOTING = f"The AWS Access Key Id {KEY_ID} is not authorized (Credential={KEY_ID}/20261125)"
ERRORS = {
    "access denied": ("AccessDeniedException", f"User: arn:aws:iam::{ACCOUNT}:user/ci {QUOTING}"),
    "expired token": ("ExpiredTokenException", f"The security token {KEY_ID} has expired"),
    "invalid key": ("InvalidClientTokenId", QUOTING),
    "validation": ("ValidationException", QUOTING),
    "internal": ("InternalFailure", QUOTING),
}


# The first calls of start and status: each answers with the error, so nothing else runs.
FIRST_CALLS = (
    "DescribePipeline",
    "StartPipelineExecution",
    "ListPipelineExecutions",
    "DescribePipelineExecution",
)


@pytest.mark.parametrize("error", list(ERRORS.values()), ids=list(ERRORS))
def test_aws_errors_print_no_credential(cli_run, calls, error):
    for operation in FIRST_CALLS:
        calls.stubs[operation] = lambda params: aws_error(*error)
    for command in ("start", "status"):
        code, _, err = cli_run(command)
        assert code != 0 and "error:" in err


@pytest.mark.parametrize("region", ["us-east-9", "mars", "eu-central-1"])
def test_bad_region_prints_no_credential(cli_run, region):
    code, _, err = cli_run("status", "--region", region)
    assert code != 0 and "error:" in err


def test_predict_with_a_bad_endpoint_prints_no_credential(cli_run, image):
    code, _, err = cli_run("predict", image, "--endpoint", "no-such-endpoint")
    assert code != 0 and "error:" in err


def test_predict_with_a_bad_local_url_prints_no_credential(cli_run, image):
    code, _, err = cli_run("predict", image, "--url", "http://127.0.0.1:9")
    assert code != 0 and "error:" in err


def test_run_local_help_prints_no_credential(cli_run):
    code, out, _ = cli_run("run-local", "--help")
    assert code == 0 and "run-local" in out
