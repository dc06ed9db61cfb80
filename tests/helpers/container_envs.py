"""The venvs that mirror AWS's images (bin/container-env), as `make test` hands them over."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TRAINING = "DOGBREED_CONTAINER_PYTHON"
INFERENCE = "DOGBREED_INFERENCE_PYTHON"
RAY_SERVE = "DOGBREED_RAY_SERVE_PYTHON"


def python_of(variable: str) -> str:
    """The interpreter `variable` names; the test is skipped without one, except in CI, where a
    missing environment is a failure."""
    python = os.environ.get(variable)
    if not python:
        message = f"{variable} is not set: `make test` sets it to a bin/container-env venv"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if not Path(python).is_file():
        pytest.fail(f"{variable}={python} does not exist")
    return python
