"""The one definition of image preprocessing, shared by training, evaluation and serving.

Evaluation and the endpoint import the same `eval_transform` that validation uses during
training, so what the model sees can never drift between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from dogbreed_jobs.images import DEFAULT_MAX_PIXELS, to_rgb  # noqa: F401 - re-exported for the scripts

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_size_for(image_size: int) -> int:
    """Shorter-side resize before the centre crop: the usual 256 for 224, scaled alike."""
    return int(round(image_size * 256 / 224))


# The augmentation's ranges: torchvision's defaults (scale 8-100 % of the area, aspect 3:4-4:3).
_RANDOM_RESIZED_CROP = v2.RandomResizedCrop(1, antialias=True)
_HORIZONTAL_FLIP_P = 0.5


def train_transform(image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(image_size, antialias=True),
            v2.RandomHorizontalFlip(_HORIZONTAL_FLIP_P),
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


# ------------------------------------------------------------------ the same steps, batched
# Training runs the steps of `train_transform` / `eval_transform` one by one so that the
# expensive, per-image part (decode, crop, resize) can run where it is cheapest (loader
# workers on the CPU, or the GPU), and the per-pixel arithmetic (float conversion,
# normalisation) runs once per batch on the device on 8-bit pixels, a quarter of the bytes.
# tests/test_data_paths.py checks that these steps give exactly what the composed transforms
# give.


@dataclass(frozen=True)
class Crop:
    """One image's draw of `train_transform`: the RandomResizedCrop box and the flip."""

    top: int
    left: int
    height: int
    width: int
    flip: bool


def draw_crop(height: int, width: int) -> Crop:
    """The crop and flip `train_transform` would draw for an image of this size.

    Draws from the default torch generator in the same order as the composed transform
    (RandomResizedCrop's box, then RandomHorizontalFlip's coin), so the two agree for the
    same generator state; only the image's size is needed, not its pixels.
    """
    # query_size reads only the shape: an expanded one-element tensor stands in for the image.
    placeholder = torch.empty(1, dtype=torch.uint8).expand(3, height, width)
    box = _RANDOM_RESIZED_CROP.make_params([placeholder])
    flip = bool(torch.rand(1) < _HORIZONTAL_FLIP_P)
    return Crop(box["top"], box["left"], box["height"], box["width"], flip)


def apply_crop(image: torch.Tensor, crop: Crop, image_size: int) -> torch.Tensor:
    """`train_transform`'s geometry on a CxHxW uint8 tensor (on any device)."""
    image = F.resized_crop(
        image, crop.top, crop.left, crop.height, crop.width, [image_size, image_size],
        antialias=True,
    )  # fmt: skip
    return F.horizontal_flip(image) if crop.flip else image


def eval_geometry(image: torch.Tensor, image_size: int, resize_size: int | None = None):
    """`eval_transform`'s geometry on a CxHxW uint8 tensor (on any device)."""
    image = F.resize(image, [resize_size or resize_size_for(image_size)], antialias=True)
    return F.center_crop(image, [image_size, image_size])


def normalize_batch(
    batch: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD, memory_format=None
) -> torch.Tensor:
    """NxCxHxW uint8 -> normalised float32, as the transforms' last two steps do per image."""
    batch = F.normalize(F.to_dtype(batch, torch.float32, scale=True), list(mean), list(std))
    if memory_format is not None:
        batch = batch.contiguous(memory_format=memory_format)
    return batch
