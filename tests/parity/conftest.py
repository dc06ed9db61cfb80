"""The container-parity tier: our scripts under AWS's own container code.

`bin/container-env training` builds a Python 3.12 venv with the training image's packages
(container/training.txt: torch, numpy, protobuf, sagemaker-training, sagemaker-pytorch-
training at the image's versions, no smdebug) apart from the orchestration venv, and
`make test` hands its interpreter to these tests in DOGBREED_CONTAINER_PYTHON. Without it
the tier is skipped, except in CI, where a missing environment is a failure.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
from helpers.container_envs import TRAINING, python_of
from helpers.datagen import make_imagefolder

from pipeline.config import PipelineConfig
from pipeline.definition import definition_json
from pipeline.definition_json import iter_steps
from pipeline.local.runner import Options, run
from pipeline.local.store import Store

PARITY = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    for item in items:
        if PARITY in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.parity)


@pytest.fixture(scope="session")
def container_python() -> str:
    return python_of(TRAINING)


@pytest.fixture(scope="session")
def container_packages(container_python) -> dict[str, str]:
    """name -> version of everything in the container venv."""
    return freeze(container_python)


def freeze(python: str) -> dict[str, str]:
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("==", 1) for line in listed.splitlines() if "==" in line)


OVERRIDES = [("ImageSize", "32"), ("MaxImageSide", "40"), ("Pretrained", "false")]
# No internet for the jobs: pip finds no index, HTTP(S) clients a closed port. The local
# SageMaker API (CompareWithDeployed) is on 127.0.0.1, which the proxy leaves alone.
OFFLINE = {
    "PIP_NO_INDEX": "1",
    "PIP_FIND_LINKS": "",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}


def _step(definition: dict, name: str) -> dict:
    return next(entry.step for entry in iter_steps(definition) if entry.name == name)


def _quick(definition: dict) -> dict:
    """Batch sizes the tiny dataset fills (the published 32/64 need more images)."""
    definition = copy.deepcopy(definition)
    ranges = _step(definition, "TuneHyperparameters")["Arguments"]["HyperParameterTuningJobConfig"][
        "ParameterRanges"
    ]
    for spec in ranges["CategoricalParameterRanges"]:
        if spec["Name"] == "batch_size":
            spec["Values"] = ['"4"', '"6"']
    return definition


@pytest.fixture(scope="session")
def execution(container_python, tmp_path_factory):
    """(outcome, store, the container venv's packages before the run): one execution of the
    exported definition under the training toolkit, shared by the parity modules."""
    before = freeze(container_python)
    work = tmp_path_factory.mktemp("parity")
    config = PipelineConfig(enable_network_isolation=True)
    return (*offline_execution(container_python, work, config, seed=3, max_trials=2), before)


def offline_execution(container_python, work: Path, config, seed: int, max_trials: int):
    """(outcome, store) of `config`'s definition run with the container venv's Python, offline,
    on a tiny generated dataset in `work`."""
    data = make_imagefolder(work / "data", 3, {"train": 6, "valid": 3, "test": 3}, seed=seed)
    definition = json.loads(definition_json(config))
    options = Options(
        store=work / "store",
        parameters=OVERRIDES + [("AccuracyThreshold", "0.0")],
        input=data,
        max_trials=max_trials,
        max_epochs=1,
        container_python=Path(container_python),
    )
    return run_offline(_quick(definition), options), Store(work / "store")


def run_offline(definition: dict, options: Options):
    """The execution, its jobs without the internet (OFFLINE)."""
    with pytest.MonkeyPatch.context() as offline:
        for key, value in OFFLINE.items():
            offline.setenv(key, value)
        return run(definition, options)
