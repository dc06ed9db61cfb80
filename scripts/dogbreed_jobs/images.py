"""Decoding any photo into upright 8-bit RGB, without torch.

Kept apart from transforms.py so the preprocessing job's worker processes do not pay for
importing torch just to normalise images.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

# Pillow's own bomb threshold (about 89 Mpx); our scripts pass it explicitly so the limit is
# visible and configurable rather than a process-global side effect.
DEFAULT_MAX_PIXELS = 89_478_485


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
