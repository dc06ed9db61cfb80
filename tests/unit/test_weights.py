"""Pretrained weights for jobs without internet: `weights upload` (against moto), the hash
check of torchvision's published file name, and the refusals before an execution starts."""

from __future__ import annotations

import hashlib
import os

import boto3
import pytest
from helpers.awsfakes import REGION

from pipeline import cli, parameter_values, weights
from pipeline.errors import UsageError

CONTENT = b"a state_dict's bytes, for the test" * 100
DIGEST = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def published(monkeypatch, tmp_path):
    """torchvision's expectation, patched to a generated file: its name carries the file's
    own SHA-256 prefix, as torchvision's names do. The URL is a file:// one, so a download
    runs through torch.hub's real code without a network."""
    source = tmp_path / "published" / f"densenet161-{DIGEST[:8]}.pth"
    source.parent.mkdir()
    source.write_bytes(CONTENT)
    expected = weights.Published(source.as_uri())
    monkeypatch.setattr(weights, "published", lambda model_name=weights.MODEL_NAME: expected)
    return expected


@pytest.fixture
def bucket(default_bucket):
    return default_bucket


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def stored_keys(bucket: str) -> list[str]:
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def test_the_published_name_carries_the_hash_torch_hub_checks():
    expected = weights.Published("https://example.invalid/models/densenet161-8d451a50.pth")
    assert (expected.filename, expected.hash_prefix) == ("densenet161-8d451a50.pth", "8d451a50")


def test_upload_of_a_local_file_with_the_published_hash(published, bucket, tmp_path, capsys):
    mine = tmp_path / "copy.pth"
    mine.write_bytes(CONTENT)
    code, out, err = run(capsys, "weights", "upload", "--bucket", bucket, "--file", str(mine))
    assert code == 0, err
    key = f"dogbreed-pipeline/weights/{published.filename}"
    assert out == f"s3://{bucket}/{key}\n"
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"]
    assert body.read() == CONTENT
    assert f"--param PretrainedWeightsUrl=s3://{bucket}/{key}" in err


def test_upload_downloads_the_published_file_and_checks_it(published, bucket, capsys):
    code, out, err = run(capsys, "weights", "upload", "--bucket", bucket, "--prefix", "team/x")
    assert code == 0, err
    assert out.strip() == f"s3://{bucket}/team/x/weights/{published.filename}"


def test_a_file_with_another_hash_is_refused_and_nothing_is_uploaded(
    published, bucket, tmp_path, capsys
):
    other = tmp_path / "densenet161-8d451a50.pth"
    other.write_bytes(CONTENT + b"tampered")
    code, out, err = run(capsys, "weights", "upload", "--bucket", bucket, "--file", str(other))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "not the published" in err and DIGEST[:8] in err
    assert stored_keys(bucket) == []


def test_a_download_with_another_hash_is_refused(monkeypatch, published, bucket, tmp_path, capsys):
    # The same bytes under a name that promises another hash.
    renamed = tmp_path / "elsewhere" / "densenet161-00000000.pth"
    renamed.parent.mkdir()
    renamed.write_bytes(CONTENT)
    wrong = weights.Published(renamed.as_uri())
    monkeypatch.setattr(weights, "published", lambda model_name=weights.MODEL_NAME: wrong)
    code, _, err = run(capsys, "weights", "upload", "--bucket", bucket)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1, err
    assert "hash" in errors[0].lower()
    assert stored_keys(bucket) == []


def test_a_missing_file_is_one_line(published, bucket, tmp_path, capsys):
    code, _, err = run(
        capsys, "weights", "upload", "--bucket", bucket, "--file", str(tmp_path / "none.pth")
    )
    assert code == 2 and "no such file" in err and err.count("\n") == 1


def test_download_problem_is_none_when_torch_hub_has_the_file(monkeypatch, tmp_path):
    expected = weights.Published("http://127.0.0.1:9/densenet161-8d451a50.pth")
    monkeypatch.setattr(weights, "published", lambda model_name=weights.MODEL_NAME: expected)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    # Port 9 (discard) refuses: the download cannot happen, and the runner says so.
    assert "is unreachable" in weights.download_problem()
    cached = tmp_path / "torch" / "hub" / "checkpoints" / expected.filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"cached")
    assert weights.download_problem() is None
    assert os.environ["TORCH_HOME"] == str(tmp_path / "torch")


def _definition(isolated: bool) -> dict:
    training = {"Name": "TrainModel", "Type": "Training", "Arguments": {}}
    if isolated:
        training["Arguments"]["EnableNetworkIsolation"] = True
    return {
        "Parameters": [
            {"Name": "Pretrained", "Type": "Boolean", "DefaultValue": True},
            {
                "Name": "PretrainedWeightsUrl",
                "Type": "String",
                "DefaultValue": "s3://bucket/p/code/0123456789abcdef/no-weights/",
            },
        ],
        "Steps": [training],
    }


def test_an_isolated_definition_without_weights_is_refused_before_it_starts():
    with pytest.raises(UsageError) as refused:
        parameter_values.check(_definition(isolated=True), [], "p")
    line = str(refused.value)
    assert "\n" not in line and "network isolation" in line
    assert "--param Pretrained=false" in line and "--param PretrainedWeightsUrl=" in line
    assert "--weights FILE" in line
    # Either way out is accepted.
    parameter_values.check(_definition(isolated=True), [("Pretrained", "false")], "p")
    given = [("PretrainedWeightsUrl", "s3://bucket/p/weights/densenet161-8d451a50.pth")]
    parameter_values.check(_definition(isolated=True), given, "p")
    # Jobs with internet download the weights themselves.
    parameter_values.check(_definition(isolated=False), [], "p")


def test_upload_defaults_to_sagemakers_default_bucket(published, bucket, tmp_path, capsys):
    mine = tmp_path / "copy.pth"
    mine.write_bytes(CONTENT)
    code, out, err = run(capsys, "weights", "upload", "--file", str(mine))
    assert code == 0, err
    assert out.startswith(f"s3://{bucket}/dogbreed-pipeline/weights/")
