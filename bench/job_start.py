"""Training-job start overhead under AWS's training toolkit, with and without a requirements
install.

    python bench/job_start.py --container-python VENV [--requirements FILE] [--repeat 3]

Each run starts `python -m sagemaker_training.cli.train` as the PyTorch training image does
(SAGEMAKER_BASE_DIR in a temporary folder, SAGEMAKER_TRAINING_MODULE set) on a code folder
that holds this checkout's bundle (what every job gets) and a one-line entry point that
prints the moment it starts. The overhead is the time from launching the toolkit to that
line: the toolkit's own start, plus, with --requirements, the `pip install -r
requirements.txt` it always runs when the code has one (the project's bundle had one until
it carried smdebug's wheel instead: `git show <rev>:scripts/requirements.txt`).

--requirements installs into the given venv, from the network, as the job would on the
image: give it a scratch venv (DOGBREED_CONTAINER_ENVS=/tmp/scratch bin/container-env
training), never the one the tests use. After each such run the venv's packages are put
back as they were, so every run installs onto the image's packages as a new job does, and
pip's cache is off (a new container has none).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import REPO, emit, machine, print_table

from pipeline.bundle import Bundle

# One token: the toolkit re-prints the script's output word by word.
PROBE = "import time; print(f'PROBE_STARTED={time.time()}', flush=True)\n"


def _job_root(root: Path, requirements: Path | None) -> Path:
    opt_ml = root / "opt" / "ml"
    code = opt_ml / "code"
    code.mkdir(parents=True)
    for name, data in Bundle.from_dir().files.items():
        if name != "requirements.txt":  # only the one asked for, below
            (code / name).write_bytes(data)
    (code / "probe.py").write_text(PROBE)
    if requirements is not None:
        shutil.copyfile(requirements, code / "requirements.txt")
    config = opt_ml / "input" / "config"
    config.mkdir(parents=True)
    hyperparameters = {
        "sagemaker_program": json.dumps("probe.py"),
        "sagemaker_submit_directory": json.dumps(str(code)),
        "sagemaker_region": json.dumps("us-east-1"),
    }
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "inputdataconfig.json").write_text("{}")
    resource = {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "lo"}
    (config / "resourceconfig.json").write_text(json.dumps(resource))
    return opt_ml


def measure(python: str, requirements: Path | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="job-start-") as tmp:
        opt_ml = _job_root(Path(tmp), requirements)
        env = {
            **os.environ,
            # As on a fresh image: nothing downloaded before.
            "PIP_NO_CACHE_DIR": "1",
            "SAGEMAKER_BASE_DIR": str(opt_ml),
            "SAGEMAKER_TRAINING_MODULE": "sagemaker_pytorch_container.training:main",
            "SM_STUDIO_LOCAL_MODE": "true",
            "PATH": os.pathsep.join([str(Path(python).parent), os.environ.get("PATH", "")]),
        }
        started = time.time()
        done = subprocess.run(
            [python, "-m", "sagemaker_training.cli.train"],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        ended = time.time()
    line = next(
        (ln.split("=") for ln in done.stdout.splitlines() if ln.startswith("PROBE_STARTED=")), None
    )
    if done.returncode != 0 or line is None:
        raise SystemExit(f"the job failed ({done.returncode}):\n{done.stdout[-3000:]}")
    return {
        "requirements": str(requirements) if requirements else None,
        "start_overhead_s": round(float(line[1]) - started, 2),
        "job_s": round(ended - started, 2),
    }


def _installed(python: str) -> dict[str, str]:
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("==", 1) for line in listed.splitlines() if "==" in line)


def _restore(python: str, before: dict[str, str]) -> None:
    """The venv's packages back as they were: what the install added goes, and
    container/training.txt puts back what it changed."""
    added = sorted(set(_installed(python)) - set(before))
    if added:
        subprocess.run([python, "-m", "pip", "uninstall", "--quiet", "-y", *added], check=True)
    spec = REPO / "container" / "training.txt"
    subprocess.run([python, "-m", "pip", "install", "--quiet", "-r", str(spec)], check=True)
    if _installed(python) != before:
        raise SystemExit(f"{python}: could not put its packages back as they were")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--container-python", required=True, help="python or venv folder")
    parser.add_argument("--requirements", type=Path, help="a requirements.txt the code carries")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    python = args.container_python
    if Path(python).is_dir():
        python = str(Path(python) / "bin" / "python")
    before = _installed(python)
    records = []
    for requirements in [None] + ([args.requirements] if args.requirements else []):
        runs = []
        for _ in range(args.repeat):
            try:
                runs.append(measure(python, requirements))
            finally:
                if requirements is not None:
                    # Every job starts from a fresh image: undo this run's install.
                    _restore(python, before)
        overheads = [run["start_overhead_s"] for run in runs]
        record = {
            "benchmark": "job_start",
            "requirements": runs[0]["requirements"],
            "runs": args.repeat,
            "best_s": min(overheads),
            "median_s": statistics.median(overheads),
            "machine": machine(),
        }
        emit(record)
        records.append(record)
    print_table(records, ["requirements", "runs", "best_s", "median_s"])


if __name__ == "__main__":
    main()
