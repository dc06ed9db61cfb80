"""Shared fixtures: the AWS test environment, and one small trained model.

tests/unit/ is the fast loop; everything under tests/e2e/ runs the real scripts end to end
and is marked `slow` here, by directory. pytest's `pythonpath` (pyproject.toml) puts scripts/
on sys.path the way the containers import them (`import model`) and tests/ for `helpers`.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from helpers.artifact import IMAGE_SIZE, NUM_CLASSES, ModelArtifact, train_head

pytest_plugins = ["helpers.aws_fixtures"]

E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(items):
    for item in items:
        if E2E in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def model_artifact(tmp_path_factory) -> ModelArtifact:
    import torch
    from helpers.datagen import make_imagefolder
    from PIL import Image

    from dogbreed_jobs import model
    from dogbreed_jobs.transforms import eval_transform, resize_size_for, to_rgb

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
    train_head(net, torch.stack(images), torch.tensor(labels))

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
