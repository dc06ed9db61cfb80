"""The container-parity tier: our scripts under AWS's own container code.

`bin/container-env training` builds a Python 3.12 venv with the training image's packages
(container/training.txt: torch, numpy, protobuf, sagemaker-training, sagemaker-pytorch-
training at the image's versions, no smdebug) apart from the orchestration venv, and
`make test` hands its interpreter to these tests in DOGBREED_CONTAINER_PYTHON. Without it
the tier is skipped, except in CI, where a missing environment is a failure.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers.container_envs import TRAINING, python_of

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
