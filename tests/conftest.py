"""Shared fixtures: scripts/ importable as SageMaker imports it, and one small trained model.

The container scripts import their siblings as top-level modules (`import model`), the way
they run under /opt/ml/.../code, so the tests put scripts/ on sys.path the same way.
"""

from __future__ import annotations

import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
TESTS = ROOT / "tests"
for _path in (SCRIPTS, TESTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# Small enough for two slow CPU cores, big enough that DenseNet-161's five downsamplings fit.
IMAGE_SIZE = 32
NUM_CLASSES = 6


@dataclass(frozen=True)
class ModelArtifact:
    model_dir: Path  # the extracted artifact, as SageMaker mounts it at /opt/ml/model
    data_root: Path  # the ImageFolder the model was fitted on: train/ and test/
    class_names: list[str]
    settings: dict


def _train_head(net, images, labels, steps: int = 150) -> None:
    """Fit only the new head on frozen, randomly initialised DenseNet features.

    The generated classes differ in colour and stripes, which even random convolutions
    separate; computing the features once keeps this to a few seconds on a CPU.
    """
    import torch
    from torch import nn

    head = net.classifier
    net.classifier = nn.Identity()
    net.eval()
    with torch.inference_mode():
        features = net(images)
    net.classifier = head
    features = features.clone()
    # Standardising the inputs of the first layer lets one learning rate suit any feature scale.
    mean, std = features.mean(0), features.std(0) + 1e-6
    first = head[0]
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    head.train()
    for _ in range(steps):
        optimizer.zero_grad()
        # Label smoothing keeps probabilities away from 0 and 1, so comparisons between
        # requests see real differences rather than saturated softmax outputs.
        logits = head((features - mean) / std)
        loss = nn.functional.cross_entropy(logits, labels, label_smoothing=0.3)
        loss.backward()
        optimizer.step()
    # Fold the standardisation into the first Linear so the saved network needs nothing extra.
    with torch.no_grad():
        first.bias -= first.weight @ (mean / std)
        first.weight /= std
    net.eval()


@pytest.fixture(scope="session")
def model_artifact(tmp_path_factory) -> ModelArtifact:
    import model
    import torch
    from datagen import make_imagefolder
    from PIL import Image
    from transforms import eval_transform, resize_size_for, to_rgb

    torch.manual_seed(0)
    root = make_imagefolder(
        tmp_path_factory.mktemp("dogs"), NUM_CLASSES, {"train": 8, "test": 4}, seed=1
    )
    folders = sorted(p.name for p in (root / "train").iterdir())
    class_names = [folder.split(".", 1)[1] for folder in folders]
    transform = eval_transform(IMAGE_SIZE)
    images, labels = [], []
    for index, folder in enumerate(folders):
        for path in sorted((root / "train" / folder).glob("*.jpg")):
            with Image.open(path) as image:
                images.append(transform(to_rgb(image)))
            labels.append(index)
    net = model.build_model("densenet161", NUM_CLASSES, hidden_units=32, dropout=0.0)
    _train_head(net, torch.stack(images), torch.tensor(labels))

    settings = {
        "model_name": "densenet161",
        "image_size": IMAGE_SIZE,
        "resize_size": resize_size_for(IMAGE_SIZE),
        "hidden_units": 32,
        "dropout": 0.0,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "top_k": 3,
    }
    model_dir = tmp_path_factory.mktemp("model")
    model.save_artifact(model_dir, net, class_names, settings)
    return ModelArtifact(model_dir, root, class_names, {**settings, "num_classes": NUM_CLASSES})


@pytest.fixture(scope="session")
def model_tarball(model_artifact, tmp_path_factory) -> Path:
    """model.tar.gz of the artifact, laid out as SageMaker uploads a training job's model."""
    tarball = tmp_path_factory.mktemp("model-archive") / "model.tar.gz"
    # Contents at the archive root, as SageMaker tars SM_MODEL_DIR; level 1 because gzip
    # hardly shrinks float weights and the default level costs seconds here.
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        for path in sorted(model_artifact.model_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(model_artifact.model_dir)), recursive=False)
    return tarball
