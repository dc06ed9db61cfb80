"""Pretrained=true without internet: a definition exported with `--network-isolation` runs end
to end from a local weights file (`run-local --weights`), and without one every way of
running stops before the first trial, in one line naming both ways out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.datagen import make_imagefolder
from helpers.paths import ROOT
from torchvision import models

from pipeline.config import PipelineConfig
from pipeline.definition import definition_json

SMALL = ["--param", "ImageSize=32", "--param", "MaxImageSide=40", "--param", "AccuracyThreshold=0"]


@pytest.fixture(scope="module")
def isolated(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("isolated") / "definition.json"
    config = PipelineConfig(enable_network_isolation=True, debugger="off")
    path.write_text(definition_json(config))
    return path


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    """A DenseNet-161 state_dict of the right shapes (random, weights=None), named as
    torchvision names its file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "densenet161-8d451a50.pth"
    torch.save(models.densenet161(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_imagefolder(
        tmp_path_factory.mktemp("data"), 3, {"train": 6, "valid": 3, "test": 3}, seed=2
    )


def run_local(store: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run-local", "--store", str(store), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1700,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if "error:" in line]


@pytest.mark.timeout(1800)  # a whole run-local: minutes on a shared machine
def test_an_isolated_definition_runs_end_to_end_from_a_local_weights_file(
    tmp_path, isolated, weights_file, data
):
    store = tmp_path / "store"
    result = run_local(
        store,
        *("--definition", str(isolated), "--input", str(data), "--weights", str(weights_file)),
        *("--param", "Pretrained=true", "--max-trials", "1", "--max-epochs", "1", *SMALL),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    execution = result.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]
    record = json.loads((store / "executions" / execution / "record.json").read_text())
    assert record["Status"] == "Succeeded"
    steps = {step["StepName"]: step for step in record["Steps"]}
    uri = record["Parameters"]["PretrainedWeightsUrl"]
    assert uri.endswith(f"/weights/{weights_file.name}")
    for log in (
        steps["TuneHyperparameters"]["Trials"][0]["LogPath"],
        steps["TrainModel"]["LogPath"],
    ):
        text = Path(log).read_text()
        assert "pretrained: ImageNet weights from" in text and weights_file.name in text


def test_an_isolated_definition_without_weights_stops_before_the_first_trial(
    tmp_path, isolated, data
):
    store = tmp_path / "store"
    result = run_local(store, "--definition", str(isolated), "--input", str(data), *SMALL)
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert "network isolation" in line
    assert "--param Pretrained=false" in line and "--weights FILE" in line
    assert not list(store.glob("executions/*/record.json"))


def test_a_machine_that_cannot_download_stops_before_the_first_trial(tmp_path, data):
    """Without isolation the jobs would download the weights; a proxy that refuses stands
    for a machine without internet, and an empty torch.hub cache for a fresh one."""
    definition = tmp_path / "definition.json"
    definition.write_text(definition_json(PipelineConfig(debugger="off")))
    refused = "http://127.0.0.1:9"
    env = {"TORCH_HOME": str(tmp_path / "torch"), "https_proxy": refused, "HTTPS_PROXY": refused}
    store = tmp_path / "store"
    result = run_local(
        store, "--definition", str(definition), "--input", str(data), *SMALL, env=env
    )
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = error_lines(result)
    assert "cannot download ImageNet weights" in line
    assert "--param Pretrained=false" in line and "--weights FILE" in line
    assert not list(store.glob("executions/*/record.json"))
