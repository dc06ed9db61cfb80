"""The one definition of image preprocessing, shared by training, evaluation and serving.

Evaluation and the endpoint import the same `eval_transform` that validation uses during
training, so what the model sees can never drift between them.
"""

from __future__ import annotations

import torch
from images import DEFAULT_MAX_PIXELS, to_rgb  # noqa: F401 - re-exported for the scripts
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_size_for(image_size: int) -> int:
    """Shorter-side resize before the centre crop: the usual 256 for 224, scaled alike."""
    return int(round(image_size * 256 / 224))


def train_transform(image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(image_size, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def eval_transform(
    image_size: int, resize_size: int | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD
) -> v2.Compose:
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(resize_size or resize_size_for(image_size), antialias=True),
            v2.CenterCrop(image_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def serve_transform(settings: dict) -> v2.Compose:
    """The eval transform, parameterised by the `model_settings.json` stored with the model."""
    return eval_transform(
        settings["image_size"],
        settings.get("resize_size"),
        settings.get("mean", IMAGENET_MEAN),
        settings.get("std", IMAGENET_STD),
    )
