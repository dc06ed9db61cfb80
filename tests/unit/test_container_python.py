"""run-local --container-python: what it accepts, and the one line it refuses with."""

from __future__ import annotations

import sys

import pytest

from pipeline.cli import main
from pipeline.local.container import ContainerPython


def test_a_python_without_aws_s_toolkit_is_refused_naming_the_way_to_build_one():
    with pytest.raises(ValueError, match="no sagemaker_training") as err:
        ContainerPython.probe(sys.executable)
    assert "bin/container-env training" in str(err.value)


@pytest.mark.parametrize("path", ["/nonexistent/python", "."])
def test_a_path_that_is_no_interpreter_is_refused(path, tmp_path):
    target = tmp_path if path == "." else path
    with pytest.raises(ValueError, match="is not an executable Python interpreter"):
        ContainerPython.probe(target)


def test_the_host_interpreter_is_the_default_and_never_the_toolkit():
    host = ContainerPython.host()
    assert host.python == sys.executable and not host.toolkit


def test_run_local_refuses_it_in_one_line_before_anything_runs(tmp_path, capsys):
    code = main(["run-local", "--store", str(tmp_path / "store"), "--container-python",
                 str(tmp_path / "missing")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "--container-python" in err and "is not an executable Python interpreter" in err
    assert not (tmp_path / "store" / "executions").exists() or not any(
        (tmp_path / "store" / "executions").iterdir()
    )


def test_container_env_takes_the_python_version_a_spec_names(tmp_path):
    """bin/container-env: `# python: 3.13` on a spec's first line, else the images' 3.12; the
    cache folder changes with the spec and the interpreter."""
    import runpy

    from helpers.paths import ROOT

    env = runpy.run_path(str(ROOT / "bin" / "container-env"), run_name="env")
    assert env["spec_python"](ROOT / "container" / "ray-serve.txt") == "3.13"
    assert env["spec_python"](ROOT / "container" / "training.txt") == "3.12"
    spec = tmp_path / "x.txt"
    spec.write_text("torch==2.10.0\n# python: 3.13\n")  # only the first line counts
    assert env["spec_python"](spec) == "3.12"
    assert env["env_dir"]("ray-serve", sys.executable).name.startswith("ray-serve-")
    assert env["env_dir"]("ray-serve", sys.executable) != env["env_dir"](
        "inference", sys.executable
    )
