"""Building the classifier and reading / writing the model artifact.

The artifact is plain data: a state_dict, the class names and the settings needed to rebuild
the network, so it loads with `torch.load(weights_only=True)` and never unpickles code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from dogbreed_jobs.contract import (
    CLASS_NAMES_FILE,
    RAY_SERVE_CONFIG,
    SERVING_SCRIPT,
    SETTINGS_FILE,
    WEIGHTS_FILE,
)

# Copied into <model_dir>/code so either serving container finds the handlers: the entry file
# TorchServe's toolkit imports, and the package with the Ray Serve front end (ray_app.py) and
# the modules the handlers use.
PACKAGE = Path(__file__).resolve().parent
SERVING_CODE = (
    SERVING_SCRIPT,
    *(
        f"{PACKAGE.name}/{name}"
        for name in (
            "__init__.py",
            "inference.py",
            "ray_app.py",
            "serving_speed.py",
            "transforms.py",
            "images.py",
            "cpus.py",
            "model.py",
            "contract.py",
        )
    ),
)

# config.yaml at the model's root, for `serve run` (Ray Serve's config file format): one
# application on the route the DLC's adapter forwards /invocations to. One replica: it gets
# every vCPU for its forward pass (ray_app.threads_per_replica), as one TorchServe worker does.
RAY_SERVE_REPLICAS = 1
RAY_SERVE_CONFIG_TEXT = f"""\
# The endpoint's Ray Serve application (AWS's Ray Serve DLC runs `serve run` on this file).
# replicas: copies of the model on the instance, each with vCPUs / replicas torch threads.
applications:
  - name: dogbreed
    route_prefix: /
    import_path: dogbreed_jobs.ray_app:build
    args:
      replicas: {RAY_SERVE_REPLICAS}
"""

_HEAD_ATTRIBUTES = ("classifier", "fc", "head", "heads")

# torchvision's published DenseNet files predate its module names ("norm.1" for "norm1");
# torchvision renames the keys itself when it downloads them, so a copy of those files given
# through the weights channel needs the same renaming.
_LEGACY_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _head_attribute(model: nn.Module) -> str:
    for name in _HEAD_ATTRIBUTES:
        if isinstance(getattr(model, name, None), nn.Module):
            return name
    raise ValueError(f"{type(model).__name__} has none of the head attributes {_HEAD_ATTRIBUTES}")


def _in_features(head: nn.Module) -> int:
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"cannot find a Linear layer in the head {head}")
    return linears[0].in_features


def build_model(
    model_name: str,
    num_classes: int,
    hidden_units: int = 512,
    dropout: float = 0.3,
    pretrained: bool = False,
    weights_path: str | os.PathLike | None = None,
) -> nn.Module:
    """A torchvision backbone with a new head: Linear -> ReLU -> Dropout -> Linear.

    `pretrained` downloads the ImageNet weights through torchvision (jobs with internet);
    `weights_path` loads a torchvision state_dict from disk instead (jobs without internet).
    """
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    try:
        builder = models.get_model_builder(model_name)
    except ValueError as err:
        raise ValueError(f"unknown model_name {model_name!r}: {err}") from None
    weights = None
    if pretrained and weights_path is None:
        weights = models.get_model_weights(model_name).DEFAULT
    model = builder(weights=weights)
    if weights_path is not None:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        if model_name.startswith("densenet"):
            state = {_LEGACY_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state.items()}
        model.load_state_dict(state)
    attribute = _head_attribute(model)
    in_features = _in_features(getattr(model, attribute))
    setattr(
        model,
        attribute,
        nn.Sequential(
            nn.Linear(in_features, hidden_units),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_units, num_classes),
        ),
    )
    return model


def head_of(model: nn.Module) -> nn.Module:
    return getattr(model, _head_attribute(model))


def freeze_backbone(model: nn.Module) -> None:
    """Train only the new head (feature extraction), as the course setup did."""
    head_params = {id(p) for p in head_of(model).parameters()}
    for parameter in model.parameters():
        parameter.requires_grad = id(parameter) in head_params


def serving_code_files() -> dict[str, Path]:
    """The files save_artifact copies into `code/`, by their path there; raises if any is missing.

    Training calls this before its first epoch, so a checkout without the serving code fails
    in seconds rather than after hours of training.
    """
    root = PACKAGE.parent
    paths = {name: root / name for name in SERVING_CODE}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"serving code {missing} missing in {root}")
    return paths


def save_artifact(
    model_dir: str | os.PathLike,
    model: nn.Module,
    class_names: list[str],
    settings: dict,
) -> None:
    """Write weights, class names, settings and the serving code (code/ and the Ray Serve
    config.yaml) into `model_dir`."""
    serving_code = serving_code_files()
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, model_dir / WEIGHTS_FILE)
    (model_dir / CLASS_NAMES_FILE).write_text(json.dumps(class_names, indent=1) + "\n")
    settings = {**settings, "num_classes": len(class_names)}
    (model_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n")
    for name, path in serving_code.items():
        target = model_dir / "code" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    (model_dir / RAY_SERVE_CONFIG).write_text(RAY_SERVE_CONFIG_TEXT)


def load_artifact(model_dir: str | os.PathLike, device: str | torch.device = "cpu"):
    """(model in eval mode, class names, settings) from a directory written by save_artifact."""
    model_dir = Path(model_dir)
    for name in (WEIGHTS_FILE, CLASS_NAMES_FILE, SETTINGS_FILE):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"model artifact is missing {name} in {model_dir}")
    class_names = json.loads((model_dir / CLASS_NAMES_FILE).read_text())
    settings = json.loads((model_dir / SETTINGS_FILE).read_text())
    if len(class_names) != settings["num_classes"]:
        raise ValueError(
            f"{CLASS_NAMES_FILE} lists {len(class_names)} classes but {SETTINGS_FILE} "
            f"says {settings['num_classes']}"
        )
    state = torch.load(model_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    # Built without memory ("meta" tensors), then the loaded tensors are adopted as they are:
    # skips randomly initialising weights that are overwritten at once (about half the load).
    with torch.device("meta"):
        model = build_model(
            settings["model_name"],
            settings["num_classes"],
            settings.get("hidden_units", 512),
            settings.get("dropout", 0.3),
        )
    model.load_state_dict(state, assign=True)  # strict: a missing or extra key raises
    unloaded = [
        name
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        if tensor.is_meta
    ]
    if unloaded:
        raise ValueError(f"{WEIGHTS_FILE} in {model_dir} does not set {unloaded[:5]}")
    model.to(device).eval()
    return model, class_names, settings
