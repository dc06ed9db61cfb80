"""Tiny, learnable ImageFolder datasets generated on the fly for the script tests.

Each class is a distinct colour with a class-specific stripe pattern and mild noise, so a
network learns it in a few steps even at 32 px, and images differ in size like real photos.
`noise=True` makes the opposite: random pixels, for the paths that say a model did not learn.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

SPLITS = ("train", "valid", "test")
_BREEDS = [
    "Affenpinscher",
    "Afghan_hound",
    "Airedale_terrier",
    "Akita",
    "Alaskan_malamute",
    "American_eskimo_dog",
    "American_foxhound",
    "Anatolian_shepherd_dog",
]


def class_folders(num_classes: int) -> list[str]:
    return [
        f"{i + 1:03d}.{_BREEDS[i % len(_BREEDS)]}{'' if i < len(_BREEDS) else i}"
        for i in range(num_classes)
    ]


def make_image(
    class_index: int, num_classes: int, rng: random.Random, size: tuple[int, int] | None = None
) -> Image.Image:
    width, height = size or (rng.randint(40, 90), rng.randint(40, 90))
    hue = int(255 * class_index / max(num_classes, 1))
    base = (hue, 255 - hue, (hue * 7) % 256)
    image = Image.new("RGB", (width, height), base)
    draw = ImageDraw.Draw(image)
    step = 4 + 3 * class_index
    for x in range(0, width, step):
        draw.line([(x, 0), (x, height)], fill=(255 - base[0], 255 - base[1], 255 - base[2]))
    for _ in range(20):
        x, y = rng.randrange(width), rng.randrange(height)
        draw.point((x, y), fill=(rng.randrange(256),) * 3)
    return image


def make_noise_image(rng: random.Random) -> Image.Image:
    """Random pixels: nothing in it tells one class from another."""
    width, height = rng.randint(40, 90), rng.randint(40, 90)
    return Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))


def make_imagefolder(
    root: str | Path,
    num_classes: int = 3,
    per_split: dict[str, int] | None = None,
    seed: int = 0,
    noise: bool = False,
) -> Path:
    """root/{train,valid,test}/NNN.Name/Name_00001.jpg, returning root; with `noise`, every
    image is random pixels (a dataset no model can learn)."""
    root = Path(root)
    per_split = per_split or {"train": 8, "valid": 4, "test": 4}
    rng = random.Random(seed)
    counter = 0
    for split, count in per_split.items():
        for index, folder in enumerate(class_folders(num_classes)):
            target = root / split / folder
            target.mkdir(parents=True, exist_ok=True)
            name = folder.split(".", 1)[1]
            for _ in range(count):
                counter += 1
                image = make_noise_image(rng) if noise else make_image(index, num_classes, rng)
                image.save(target / f"{name}_{counter:05d}.jpg", quality=90)
    return root
