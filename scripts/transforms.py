"""The one definition of image preprocessing, shared by training, evaluation and serving.

Evaluation and the endpoint import the same `eval_transform` that validation uses during
training, so what the model sees can never drift between them.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Pillow's own bomb threshold (about 89 Mpx); our scripts pass it explicitly so the limit is
# visible and configurable rather than a process-global side effect.
DEFAULT_MAX_PIXELS = 89_478_485


def resize_size_for(image_size: int) -> int:
    """Shorter-side resize before the centre crop: the usual 256 for 224, scaled alike."""
    return int(round(image_size * 256 / 224))


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB from any Pillow mode (16-bit, CMYK, palette, alpha, grayscale)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # convert("RGB") clips 16-bit values to white: rescale to 8 bits by the image's range.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        array = np.clip(array * (255.0 / top), 0, 255).astype(np.uint8)
        image = Image.fromarray(array, mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Flatten transparency on white rather than black, the way viewers show these images.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


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
