"""A wheel built from the repo carries the scripts bundle and exports without a checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv

import pytest
from helpers.paths import ROOT

from pipeline.config import PipelineConfig
from pipeline.definition import definition_json


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_exports_the_same_definition(tmp_path):
    # Build from a copy: an in-tree build/ left by an earlier build could leak stale files.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*cache"
    )
    shutil.copytree(ROOT, source, ignore=ignore)
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(source),
        ],
        check=True,
    )
    (wheel,) = dist.glob("dogbreed_pipeline-*.whl")
    fresh = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(fresh)
    site = next((fresh / "lib").glob("python3*/site-packages"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
    )
    # The fresh venv gets the dependencies (sagemaker, boto3) from this venv's site-packages
    # as a plain path entry: .pth files there, like this checkout's editable finder, stay off.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    python = fresh / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import pipeline.bundle as b; print(b.entries_dir(), b.package_dir())"],
        cwd=outside,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where == [str(site / "pipeline" / "scripts_bundle"), str(site / "dogbreed_jobs")], where
    out = outside / "definition.json"
    result = subprocess.run(
        [str(python), "-m", "pipeline.cli", "export", "--out", str(out)],
        cwd=outside,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text() == definition_json(PipelineConfig())
