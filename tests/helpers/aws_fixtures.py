"""Fixtures for the AWS-facing tests: a clean AWS environment, moto, and a call recorder.

tests/conftest.py loads this as a plugin for every test (`pytest_plugins`).
"""

from __future__ import annotations

import os

import pytest

from helpers.awsfakes import DEFAULT_BUCKET, REGION, SECRET, Calls


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Dummy credentials and a region; nothing from the user's ~/.aws or environment."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return monkeypatch


@pytest.fixture
def moto(aws_env):
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def default_bucket(moto):
    """SageMaker's default bucket of moto's account, created."""
    import boto3

    boto3.client("s3", region_name=REGION).create_bucket(Bucket=DEFAULT_BUCKET)
    return DEFAULT_BUCKET


@pytest.fixture
def calls(monkeypatch):
    """Record (and optionally stub) every call made through pipeline.aws.connect's session."""
    from pipeline import aws

    recorder = Calls()
    real_connect = aws.connect

    def connect(*args, **kwargs):
        client = real_connect(*args, **kwargs)
        client.session.events.register("before-parameter-build.*.*", recorder._record)
        client.session.events.register("before-call.*.*", recorder._answer)
        recorder.sessions.append(client)
        return client

    monkeypatch.setattr(aws, "connect", connect)
    return recorder


@pytest.fixture(scope="session")
def moto_server():
    """moto's server on a free port of 127.0.0.1, for AWS_ENDPOINT_URL (reset per test)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


_built: dict = {}


@pytest.fixture
def definitions(monkeypatch):
    """The real definition_json, memoised per config: a build takes tens of seconds here."""
    import pipeline.definition

    real = pipeline.definition.definition_json

    def definition_json(config):
        if config not in _built:
            _built[config] = real(config)
        return _built[config]

    monkeypatch.setattr(pipeline.definition, "definition_json", definition_json)
    return definition_json


@pytest.fixture(scope="session", autouse=True)
def shared_botocore_loader():
    """One botocore data loader for the whole test session.

    Every boto3 session (the CLI makes one per command, so one per test) would parse the same
    read-only service models again: ~0.5 s a test, most of the fast loop. Tests only: the
    product makes one session per command anyway.
    """
    import botocore.loaders
    import botocore.session

    loaders: dict = {}
    create_loader = botocore.loaders.create_loader

    def shared(search_path_string=None):
        if search_path_string not in loaders:
            loaders[search_path_string] = create_loader(search_path_string)
        return loaders[search_path_string]

    botocore.session.create_loader = shared
    yield
    botocore.session.create_loader = create_loader
