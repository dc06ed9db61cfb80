"""A small, learnable stand-in for the dog-breed dataset, generated offline in seconds.

The layout is the reference dataset's: `train/ valid/ test/`, one numbered folder per breed
(`001.Affenpinscher`), files named `<Breed>_<number>.jpg` numbered across the splits. Class
names are the first N breeds of the reference data (AKC names), so a demo run reads like the
real thing while needing no download.

Each class is a two-tone pattern in its own hue: light and dark shades of that hue laid out as
horizontal stripes, vertical stripes, checks, dots or rings. Hue and the kind of pattern survive
what training does to an image (RandomResizedCrop down to 8 % of the area, horizontal flips; a
flip turns a diagonal into the other diagonal, so there are no diagonals), and even a DenseNet
trained from scratch separates them within a couple of epochs at 32-64 px. A lighting gradient,
noise, small colour jitter, a random pattern scale and phase, random sizes and aspect ratios and
varying JPEG quality keep the images from being copies of each other.

`train/` also gets the files real datasets carry and the preparation step must skip: a
zero-byte `.jpg`, a text file named `.jpg`, a truncated JPEG and a macOS `.DS_Store`.

Output is byte-identical for the same arguments: every image draws from its own random stream,
seeded by (seed, split, class, number), and Pillow encodes deterministically.

Only Pillow and numpy are used, so this runs wherever the CLI's [local] extra is installed.
"""

from __future__ import annotations

import colorsys
import io
from pathlib import Path

import numpy as np
from PIL import Image

from dogbreed_jobs import contract

SPLITS = contract.SPLITS

# The class folders of the reference dog-breed dataset, in its order (AKC breed names).
BREEDS = (
    "Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita", "Alaskan_malamute",
    "American_eskimo_dog", "American_foxhound", "American_staffordshire_terrier",
    "American_water_spaniel", "Anatolian_shepherd_dog", "Australian_cattle_dog",
    "Australian_shepherd", "Australian_terrier", "Basenji", "Basset_hound", "Beagle",
    "Bearded_collie", "Beauceron", "Bedlington_terrier", "Belgian_malinois", "Belgian_sheepdog",
    "Belgian_tervuren", "Bernese_mountain_dog", "Bichon_frise", "Black_and_tan_coonhound",
    "Black_russian_terrier", "Bloodhound", "Bluetick_coonhound", "Border_collie",
    "Border_terrier", "Borzoi", "Boston_terrier", "Bouvier_des_flandres", "Boxer",
    "Boykin_spaniel", "Briard", "Brittany", "Brussels_griffon", "Bull_terrier", "Bulldog",
    "Bullmastiff", "Cairn_terrier", "Canaan_dog", "Cane_corso", "Cardigan_welsh_corgi",
    "Cavalier_king_charles_spaniel", "Chesapeake_bay_retriever", "Chihuahua", "Chinese_crested",
    "Chinese_shar-pei", "Chow_chow", "Clumber_spaniel", "Cocker_spaniel", "Collie",
    "Curly-coated_retriever", "Dachshund", "Dalmatian", "Dandie_dinmont_terrier",
    "Doberman_pinscher", "Dogue_de_bordeaux", "English_cocker_spaniel", "English_setter",
    "English_springer_spaniel", "English_toy_spaniel", "Entlebucher_mountain_dog",
    "Field_spaniel", "Finnish_spitz", "Flat-coated_retriever", "French_bulldog",
    "German_pinscher", "German_shepherd_dog", "German_shorthaired_pointer",
    "German_wirehaired_pointer", "Giant_schnauzer", "Glen_of_imaal_terrier", "Golden_retriever",
    "Gordon_setter", "Great_dane", "Great_pyrenees", "Greater_swiss_mountain_dog", "Greyhound",
    "Havanese", "Ibizan_hound", "Icelandic_sheepdog", "Irish_red_and_white_setter",
    "Irish_setter", "Irish_terrier", "Irish_water_spaniel", "Irish_wolfhound",
    "Italian_greyhound", "Japanese_chin", "Keeshond", "Kerry_blue_terrier", "Komondor", "Kuvasz",
    "Labrador_retriever", "Lakeland_terrier", "Leonberger", "Lhasa_apso", "Lowchen", "Maltese",
    "Manchester_terrier", "Mastiff", "Miniature_schnauzer", "Neapolitan_mastiff",
    "Newfoundland", "Norfolk_terrier", "Norwegian_buhund", "Norwegian_elkhound",
    "Norwegian_lundehund", "Norwich_terrier", "Nova_scotia_duck_tolling_retriever",
    "Old_english_sheepdog", "Otterhound", "Papillon", "Parson_russell_terrier", "Pekingese",
    "Pembroke_welsh_corgi", "Petit_basset_griffon_vendeen", "Pharaoh_hound", "Plott", "Pointer",
    "Pomeranian", "Poodle", "Portuguese_water_dog", "Saint_bernard", "Silky_terrier",
    "Smooth_fox_terrier", "Tibetan_mastiff", "Welsh_springer_spaniel",
    "Wirehaired_pointing_griffon", "Xoloitzcuintli", "Yorkshire_terrier",
)  # fmt: skip

PATTERNS = ("horizontal stripes", "vertical stripes", "checks", "dots", "rings")
# Sides in pixels, each drawn on its own so aspect ratios vary as in photos.
SIZES = {"small": (64, 160), "photo": (300, 800)}
DEFAULT_PER_CLASS = 20

# The bad files written into train/, with the reason scripts/preprocess.py gives for each.
ZERO_BYTES = "zero-byte file"
TEXT_AS_JPEG = "text file named .jpg"
TRUNCATED = "truncated JPEG"
HIDDEN = "hidden file"


def class_folders(num_classes: int) -> list[str]:
    """`001.Affenpinscher`, `002.Afghan_hound`, ...: sorted order is class-index order."""
    if not 2 <= num_classes <= len(BREEDS):
        raise ValueError(f"the number of classes must be 2-{len(BREEDS)}, got {num_classes}")
    return [f"{index + 1:03d}.{BREEDS[index]}" for index in range(num_classes)]


def split_counts(per_class: int) -> dict[str, int]:
    """Images per class in each split: `per_class` to train, a quarter each to valid and test."""
    if per_class < 1:
        raise ValueError(f"images per class must be at least 1, got {per_class}")
    held_out = max(2, round(per_class / 4))
    return {"train": per_class, "valid": held_out, "test": held_out}


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float32) * 255


def _pattern(kind: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask of the pattern (True: the dark tone) at a random scale and phase."""
    period = min(width, height) / rng.uniform(4.0, 8.0)
    phase_x, phase_y = rng.uniform(0, period, size=2)
    x = np.arange(width, dtype=np.float32)[None, :] + phase_x
    y = np.arange(height, dtype=np.float32)[:, None] + phase_y
    if kind == "horizontal stripes":
        return np.broadcast_to((y // (period / 2)) % 2 == 0, (height, width))
    if kind == "vertical stripes":
        return np.broadcast_to((x // (period / 2)) % 2 == 0, (height, width))
    if kind == "checks":
        return ((x // period) + (y // period)) % 2 == 0
    if kind == "dots":
        dx, dy = x % period - period / 2, y % period - period / 2
        return dx**2 + dy**2 < (0.3 * period) ** 2
    centre_x, centre_y = rng.uniform(0, width), rng.uniform(0, height)
    distance = np.sqrt((x - phase_x - centre_x) ** 2 + (y - phase_y - centre_y) ** 2)
    return (distance // (period / 2)) % 2 == 0


def make_image(
    class_index: int, num_classes: int, rng: np.random.Generator, size: str = "small"
) -> Image.Image:
    """One picture of class `class_index`: its hue and its pattern, with photo-like variation."""
    low, high = SIZES[size]
    width, height = (int(side) for side in rng.integers(low, high, size=2, endpoint=True))
    # Jitter stays well inside the gap between neighbouring classes' hues.
    hue = class_index / num_classes + rng.uniform(-1, 1) * min(0.02, 0.2 / num_classes)
    light = _rgb(hue, rng.uniform(0.45, 0.6), rng.uniform(0.8, 0.95))
    dark = _rgb(hue, rng.uniform(0.7, 0.9), rng.uniform(0.3, 0.45))
    mask = _pattern(PATTERNS[class_index % len(PATTERNS)], width, height, rng)
    pixels = np.where(mask[..., None], dark, light)
    # Light falling from one side, as in a photo taken near a window.
    angle = rng.uniform(0, 2 * np.pi)
    x = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    y = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    lighting = 1.0 + rng.uniform(0.1, 0.3) * (np.cos(angle) * x + np.sin(angle) * y)
    pixels = pixels * lighting[..., None] + rng.normal(0, 6, size=(height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), "RGB")


def photo_like(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """An image that compresses and decodes like a photo: smooth shapes plus fine texture.

    For timing and decoding, not learning. Flat colours would make JPEG decoding unrealistically
    cheap and pure noise unrealistically expensive; a blurred low-resolution field with mild
    grain lands at photo-like file sizes (about 40-120 KB for 500x375 at quality 90).
    """
    coarse = rng.integers(0, 256, size=(max(2, height // 40), max(2, width // 40), 3))
    field = Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BICUBIC)
    grain = rng.normal(0, 12, size=(height, width, 3))
    pixels = np.clip(np.asarray(field, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _image_bytes(seed: int, split: int, class_index: int, number: int, num_classes: int, size: str):
    rng = np.random.default_rng([seed, split, class_index, number])
    image = make_image(class_index, num_classes, rng, size)
    return _jpeg(image, int(rng.integers(80, 95, endpoint=True)))


def _bad_files(folders: list[str], seed: int, num_classes: int, size: str) -> dict[str, tuple]:
    """{path under the dataset root: (what it is, its bytes)}, spread over the first classes."""

    def breed(index: int) -> tuple[str, str]:
        folder = folders[index % len(folders)]
        return folder, folder.split(".", 1)[1]

    truncated = _image_bytes(seed, len(SPLITS), 2 % num_classes, 0, num_classes, size)
    files = {}
    folder, name = breed(0)
    files[f"train/{folder}/{name}_empty.jpg"] = (ZERO_BYTES, b"")
    folder, name = breed(1)
    files[f"train/{folder}/{name}_notes.jpg"] = (
        TEXT_AS_JPEG,
        b"Photos of this breed still to come. This file is text, not a JPEG.\n",
    )
    folder, name = breed(2)
    # Cut inside the compressed scan data: the header still says JPEG, the pixels run out.
    files[f"train/{folder}/{name}_truncated.jpg"] = (TRUNCATED, truncated[: len(truncated) // 2])
    files["train/.DS_Store"] = (HIDDEN, b"\x00\x00\x00\x01Bud1" + bytes(26))
    return files


def generate(
    out_dir: str | Path,
    num_classes: int = 5,
    per_class: int = DEFAULT_PER_CLASS,
    seed: int = 0,
    size: str = "small",
) -> dict:
    """Write the dataset into `out_dir` (missing or empty) and return a summary of it.

    `per_class` is the number of training images per class; valid/ and test/ get a quarter as
    many each (at least 2). The summary holds the class folders, images per split, the bad
    files (path and what each is) and the bytes written.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if seed < 0:
        raise ValueError(f"the seed must be 0 or more, got {seed}")
    folders = class_folders(num_classes)
    counts = split_counts(per_class)
    root = Path(out_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(
            f"{root} already exists and is not an empty folder: give a new or empty one, so "
            "no earlier files mix with this dataset"
        )

    total_bytes = 0
    images = dict.fromkeys(SPLITS, 0)
    for index, folder in enumerate(folders):
        name = folder.split(".", 1)[1]
        number = 0
        for split_index, split in enumerate(SPLITS):
            target = root / split / folder
            target.mkdir(parents=True, exist_ok=True)
            for _ in range(counts[split]):
                number += 1
                data = _image_bytes(seed, split_index, index, number, num_classes, size)
                (target / f"{name}_{number:05d}.jpg").write_bytes(data)
                total_bytes += len(data)
                images[split] += 1

    bad = _bad_files(folders, seed, num_classes, size)
    for path, (_, data) in bad.items():
        (root / path).write_bytes(data)
        total_bytes += len(data)

    return {
        "out_dir": str(root),
        "seed": seed,
        "size": size,
        "classes": folders,
        "patterns": {folder: PATTERNS[i % len(PATTERNS)] for i, folder in enumerate(folders)},
        "per_class": counts,
        "images": images,
        "bad_files": [{"path": path, "kind": kind} for path, (kind, _) in sorted(bad.items())],
        "bytes": total_bytes,
    }
