"""A job's container on this machine: its root standing in for `/`, its inputs and outputs.

A job gets its own root, `<execution>/jobs/<job>/`: every `/opt/ml/...` path of the job
(arguments, LocalPaths, SM_* variables) is rewritten into it. Inputs are placed there from
the store before the script starts and outputs go back to their S3 URIs after it
succeeded, as SageMaker downloads and uploads them. What the job prints goes to its log
file; METRICS lines are also shown as progress.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess  # nosec B404 - probes a given interpreter with fixed arguments, no shell
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dogbreed_jobs import contract
from pipeline.local.store import Store, StoreError
from pipeline.local.supervisor import JobFailed, Supervisor

log = logging.getLogger("pipeline.local")

HOST = "algo-1"
_CONTAINER_ROOT = re.compile(r"(?<![\w./-])/opt/ml(?=/|$)")
# The scripts print METRICS lines in the format their contract defines; it parses them too.
_parse_metrics = contract.parse_metrics


# What a job's interpreter must import, and what it reports about itself.
_PROBE = """
import importlib.util, json, sys
found = lambda name: importlib.util.find_spec(name) is not None
print(json.dumps({
    "version": "%d.%d.%d" % sys.version_info[:3],
    "torch": found("torch"),
    "toolkit": found("sagemaker_training") and found("sagemaker_pytorch_container"),
}))
"""


@dataclass(frozen=True)
class ContainerPython:
    """The interpreter jobs run with, and whether training starts through AWS's toolkit.

    By default jobs run with this process's interpreter and training jobs with the runner's
    own launcher (training_job.py). Given a Python that has AWS's training toolkit (the venv
    of `bin/container-env training`, which mirrors the image's packages), every job runs
    with it and training jobs start as SageMaker starts them: `sagemaker_training` reads
    /opt/ml/input/config, sets SM_*, and runs train.py (or torchrun) itself.
    """

    python: str
    toolkit: bool
    version: str

    @classmethod
    def host(cls) -> ContainerPython:
        return cls(sys.executable, False, ".".join(map(str, sys.version_info[:3])))

    @classmethod
    def probe(cls, python: Path | str) -> ContainerPython:
        path = Path(python)
        if path.is_dir():  # a venv's folder, as bin/container-env prints it
            path = path / "bin" / "python"
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ValueError(f"{path} is not an executable Python interpreter")
        try:
            # The interpreter the user named, fixed arguments, no shell.
            done = subprocess.run(  # nosec B603
                [str(path), "-c", _PROBE], capture_output=True, text=True, timeout=60
            )
            found = json.loads(done.stdout)
        except (OSError, ValueError, subprocess.TimeoutExpired) as err:
            raise ValueError(f"{path} does not run as Python: {err}") from None
        if not found["torch"]:
            raise ValueError(f"{path} (Python {found['version']}) cannot import torch")
        if not found["toolkit"]:
            raise ValueError(
                f"{path} (Python {found['version']}) has no sagemaker_training and "
                "sagemaker_pytorch_container: `bin/container-env training` builds a venv "
                "with AWS's training toolkit"
            )
        return cls(str(path), True, found["version"])

    def describe(self) -> str:
        return f"{self.python} (Python {self.version}, AWS's training toolkit)"


@dataclass
class Job:
    """What every job needs besides its arguments."""

    store: Store
    name: str
    root: Path
    log_path: Path
    label: str  # how progress lines name it: the step, or the step and trial
    supervisor: Supervisor
    # Extra environment: thread limits, the local SageMaker API; None unsets a variable.
    env: dict[str, str | None] = field(default_factory=dict)
    container: ContainerPython = field(default_factory=ContainerPython.host)

    @property
    def opt_ml(self) -> Path:
        return self.root / "opt" / "ml"


def container_path(root: Path, path: str) -> Path:
    """Where the container path `/opt/ml/...` (or any absolute path) lives in the job root."""
    return root / path.lstrip("/")


def rewrite(text: str, root: Path) -> str:
    """Every /opt/ml path inside `text` moved into the job root."""
    return _CONTAINER_ROOT.sub(lambda _: str(root / "opt" / "ml"), text)


# The container contract's own variables: a SageMaker job never inherits them from whoever
# started it, so neither does a local one (a SAGEMAKER_PROGRAM left in the shell, or by an
# endpoint served in this process, would make AWS's training toolkit start another script).
_CONTRACT_PREFIXES = ("SM_", "SAGEMAKER_")


def environment(job: Job, extra: dict) -> dict[str, str]:
    """The job's process environment: this one's less the container contract's variables,
    the runner's limits, then the job's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONTRACT_PREFIXES)}
    for key, value in job.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env.update({key: str(value) for key, value in extra.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def place_input(store: Store, uri: str, destination: Path, what: str) -> int:
    """The objects at `uri` under `destination`, as SageMaker downloads an input; how many."""
    try:
        return store.download(uri, destination)
    except StoreError as err:
        raise JobFailed(f"ClientError: {what}: {err}") from None


def discard(folder: Path) -> None:
    """Drop a finished job's copy of its inputs: the store keeps the originals, and a job
    folder per trial holding the whole dataset would fill the disk. A failed job keeps
    everything, for its post-mortem."""
    shutil.rmtree(folder, ignore_errors=True)


def tar_folder(folder: Path, tarball: Path) -> None:
    tarball.parent.mkdir(parents=True, exist_ok=True)
    # Level 1: float weights hardly compress, and the default level costs seconds per job.
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)


def echo_metrics(job: Job) -> Callable[[str], None]:
    """A line handler that shows the job's METRICS lines as progress, and its NOTICE lines
    (contract.py) as warnings."""

    def on_line(line: str) -> None:
        metrics = _parse_metrics(line)
        if metrics:
            shown = " ".join(f"{key}={value}" for key, value in metrics.items())
            log.info("[%s] %s", job.label, shown)
        notice = contract.parse_notice(line)
        if notice:
            log.warning("[%s] %s", job.label, notice)

    return on_line
