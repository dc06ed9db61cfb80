"""TrainModel's Debugger hook works in an interpreter without smdebug, from the bundled wheel.

AWS's PyTorch training images have no smdebug, and the jobs install nothing (no
requirements.txt, no network). train.py runs here with TrainModel's own hook config in this
interpreter with its installed smdebug hidden: the sitecustomize below swaps the site-packages
folder that holds smdebug on sys.path for a copy of it made of symlinks, smdebug's left out.
Everything else, .pth effects included, stays as installed, so this is the same interpreter
minus one package, as in the image. (Where smdebug is not installed, such as on the image
itself, nothing is hidden and the run is the image's.)

numpy 2.2 deprecates ndarray.tostring(), which numpy 2.3 removed and smdebug's writer calls:
the run turns that deprecation into an error, so a writer that still called it would save
nothing here too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.datagen import make_imagefolder
from helpers.definitions import step
from helpers.paths import ROOT, SCRIPTS

from dogbreed_jobs import smdebug_loader

WHEEL = SCRIPTS / "dogbreed_jobs" / "smdebug-1.0.34-py2.py3-none-any.whl"
TOSTRING_IS_AN_ERROR = "error:tostring() is deprecated:DeprecationWarning"
HIDE = """\
import sys
sys.path[:] = [{overlay!r} if entry == {site!r} else entry for entry in sys.path]
"""


def _hide_installed_smdebug(workdir: Path) -> dict[str, str]:
    """Environment variables under which this interpreter cannot import its smdebug."""
    spec = importlib.util.find_spec("smdebug")
    if spec is None:
        return {}
    site = Path(spec.origin).parent.parent
    overlay = workdir / "site-packages"
    overlay.mkdir()
    for entry in site.iterdir():
        if not entry.name.startswith("smdebug"):
            (overlay / entry.name).symlink_to(entry)
    hide = workdir / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE.format(overlay=str(overlay), site=str(site)))
    return {"PYTHONPATH": str(hide)}


def _hook_config(workdir: Path, tensors: Path) -> Path:
    """debughookconfig.json as SageMaker writes it for TrainModel, plus the weights at every
    validation step, to compare with the model the run writes."""
    definition = json.loads((ROOT / "pipeline_definition.json").read_text())
    hook = step(definition, "TrainModel")["Arguments"]["DebugHookConfig"]
    config = workdir / "debughookconfig.json"
    config.write_text(
        json.dumps(
            {
                "LocalPath": str(tensors),
                "HookParameters": {**hook["HookParameters"], "eval.save_interval": "1"},
                "CollectionConfigurations": [
                    *hook["CollectionConfigurations"],
                    {"CollectionName": "weights"},
                ],
            }
        )
    )
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bundled-smdebug")
    data = make_imagefolder(workdir / "data", 3, {"train": 4, "valid": 3}, seed=3)
    tensors = workdir / "tensors"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SM_", "RANK", "WORLD_SIZE", "LOCAL_", "MASTER_", "PYTHON"))
    }
    env.update(
        SM_CHANNEL_TRAIN=str(data / "train"),
        SM_CHANNEL_VALID=str(data / "valid"),
        SM_MODEL_DIR=str(workdir / "model"),
        SM_OUTPUT_DATA_DIR=str(workdir / "output"),
        SMDEBUG_CONFIG_FILE_PATH=str(_hook_config(workdir, tensors)),
        PYTHONWARNINGS=TOSTRING_IS_AN_ERROR,
        OMP_NUM_THREADS="1",
        **_hide_installed_smdebug(workdir),
    )
    command = [sys.executable, "train.py", "--checkpoint-dir", "none", "--epochs", "1"]
    command += ["--image_size", "32", "--pretrained", "false", "--hidden-units", "32"]
    command += ["--batch_size", "6", "--model_name", "densenet121", "--workers", "0"]
    command += ["--min-steps-per-epoch", "1"]
    proc = subprocess.run(
        command,
        cwd=SCRIPTS,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    return proc, workdir, tensors


def test_the_hidden_smdebug_is_really_hidden(tmp_path):
    env = {**os.environ, **_hide_installed_smdebug(tmp_path)}
    probe = "import importlib.util; print(importlib.util.find_spec('smdebug'))"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "None", out.stderr


def test_train_without_smdebug_installs_the_bundled_wheel_outside_site_packages(run):
    proc, _, _ = run
    assert proc.returncode == 0, proc.stdout
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("smdebug 1.0.34:")]
    assert f"installed from the bundled {WHEEL.name} into " in line
    target = line.split(" into ", 1)[1].split(";")[0]
    # A folder of the process, removed when it exits; nothing went into site-packages.
    assert Path(target).name.startswith("smdebug-") and not Path(target).exists()


def test_tensors_saved_from_the_bundled_wheel_read_back_as_written(run):
    import numpy as np
    import torch

    proc, workdir, tensors = run
    assert proc.returncode == 0, proc.stdout
    # create_trial waits for a trial that is not there yet, rather than failing.
    assert tensors.is_dir(), proc.stdout
    smd = smdebug_loader.load()
    from smdebug.trials import create_trial

    trial = create_trial(str(tensors))
    # Only DenseNet's three transition ReLUs match TrainModel's `.*relu_input`.
    activations = trial.tensor_names(regex=".*relu_input")
    assert len(activations) == 3, activations
    for name in activations:
        value = trial.tensor(name).value(0, mode=smd.modes.TRAIN)
        assert value.dtype == np.float32 and np.isfinite(value).all() and value.any(), name
    [gradient] = trial.tensor_names(regex="gradient/.*classifier.0.weight")
    assert trial.tensor(gradient).value(0, mode=smd.modes.TRAIN).any()
    assert trial.tensor_names(collection="losses")
    # The weights at the last validation step are the trained ones, which model.pth holds:
    # the same numbers, bit for bit, after smdebug's writer and reader.
    state = torch.load(workdir / "model" / "model.pth", weights_only=True)
    [name] = trial.tensor_names(regex=r"^DenseNet_classifier\.0\.weight$")
    weights = trial.tensor(name)
    saved = weights.value(weights.steps(mode=smd.modes.EVAL)[-1], mode=smd.modes.EVAL)
    np.testing.assert_array_equal(saved, state["classifier.0.weight"].numpy())
