"""sample-data: the generated demo dataset, checked on its files and through preprocess.py."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dogbreed_jobs import layout, preprocess
from dogbreed_jobs.transforms import train_transform
from pipeline import cli, sample_data

SPLIT_COUNTS = {"train": 4, "valid": 2, "test": 2}
FOLDERS = ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]
BAD_FILES = {
    "train/.DS_Store",
    "train/001.Affenpinscher/Affenpinscher_empty.jpg",
    "train/002.Afghan_hound/Afghan_hound_notes.jpg",
    "train/003.Airedale_terrier/Airedale_terrier_truncated.jpg",
}


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("sample") / "dogs"
    return root, sample_data.generate(root, num_classes=3, per_class=4, seed=7)


def test_layout_is_the_reference_one_with_numbered_breed_folders(dataset):
    root, summary = dataset
    assert sorted(p.name for p in root.iterdir()) == ["test", "train", "valid"]
    assert summary["classes"] == FOLDERS
    good = {name for name in files_under(root) if name not in BAD_FILES}
    expected = set()
    for folder in FOLDERS:
        breed, number = folder.split(".", 1)[1], 0
        for split in ("train", "valid", "test"):
            for _ in range(SPLIT_COUNTS[split]):
                number += 1
                expected.add(f"{split}/{folder}/{breed}_{number:05d}.jpg")
    assert good == expected
    assert summary["images"] == {split: 3 * n for split, n in SPLIT_COUNTS.items()}


def test_images_are_jpegs_of_varied_sizes_and_aspect_ratios(dataset):
    root, _ = dataset
    sizes = []
    for path in sorted(root.glob("*/*/*_0*.jpg")):
        with Image.open(path) as image:
            assert (image.format, image.mode) == ("JPEG", "RGB")
            sizes.append(image.size)
    low, high = sample_data.SIZES["small"]
    assert all(low <= side <= high for size in sizes for side in size)
    ratios = {round(width / height, 1) for width, height in sizes}
    assert len(set(sizes)) > len(sizes) // 2 and min(ratios) < 0.8 and max(ratios) > 1.25


def test_photo_size_gives_photo_like_dimensions(tmp_path):
    summary = sample_data.generate(tmp_path / "photos", num_classes=2, per_class=1, size="photo")
    low, high = sample_data.SIZES["photo"]
    for path in sorted((tmp_path / "photos").glob("*/*/*_0*.jpg")):
        with Image.open(path) as image:
            assert low <= min(image.size) and max(image.size) <= high
    assert summary["size"] == "photo"


def test_two_runs_with_the_same_seed_are_byte_identical_and_another_seed_differs(tmp_path):
    runs = [
        sample_data.generate(tmp_path / name, num_classes=3, per_class=2, seed=seed)
        for name, seed in (("a", 3), ("b", 3), ("c", 4))
    ]
    a, b, c = (files_under(tmp_path / name) for name in "abc")
    assert a == b and runs[0]["bytes"] == runs[1]["bytes"]
    assert a.keys() == c.keys()
    changed = [name for name in a if a[name] != c[name] and a[name]]
    assert len(changed) > len(a) // 2


def test_train_holds_the_bad_files_real_datasets_carry(dataset):
    root, summary = dataset
    assert {entry["path"] for entry in summary["bad_files"]} == BAD_FILES
    assert (root / "train/001.Affenpinscher/Affenpinscher_empty.jpg").stat().st_size == 0
    text = (root / "train/002.Afghan_hound/Afghan_hound_notes.jpg").read_bytes()
    assert b"not a JPEG" in text and not text.startswith(b"\xff\xd8")
    truncated = (root / "train/003.Airedale_terrier/Airedale_terrier_truncated.jpg").read_bytes()
    assert truncated.startswith(b"\xff\xd8\xff")
    with Image.open(io.BytesIO(truncated)) as image, pytest.raises(OSError, match="truncated"):
        image.load()
    assert (root / "train/.DS_Store").is_file()
    assert not any(name in path for path in BAD_FILES for name in ("valid/", "test/"))


def test_preprocess_accepts_it_and_skips_exactly_the_bad_files(dataset, tmp_path):
    root, summary = dataset
    output = tmp_path / "prepared"
    assert (
        preprocess.main(["--input-dir", str(root), "--output-dir", str(output), "--workers", "1"])
        == 0
    )
    report = json.loads((output / "meta" / "report.json").read_text())
    reasons = {entry["path"]: entry["reason"] for entry in report["skipped"]}
    assert reasons == {
        "train/.DS_Store": layout.HIDDEN_FILE,
        "train/001.Affenpinscher/Affenpinscher_empty.jpg": preprocess.EMPTY,
        "train/002.Afghan_hound/Afghan_hound_notes.jpg": preprocess.NOT_IMAGE,
        "train/003.Airedale_terrier/Airedale_terrier_truncated.jpg": preprocess.CORRUPT,
    }
    assert report["counts"]["written"] == summary["images"]
    names = json.loads((output / "meta" / "class_names.json").read_text())
    assert names == ["Affenpinscher", "Afghan_hound", "Airedale_terrier"]


def test_classes_stay_apart_after_the_training_augmentation(tmp_path):
    """A cheap stand-in for learnability: after RandomResizedCrop + flip at 32 px, the mean
    colour alone puts held-out images with their own class (nearest class centroid)."""
    root = tmp_path / "dogs"
    summary = sample_data.generate(root, num_classes=8, per_class=6, seed=1)
    transform = train_transform(32)
    torch.manual_seed(0)

    def features(split: str) -> tuple[np.ndarray, np.ndarray]:
        rows, labels = [], []
        for index, folder in enumerate(summary["classes"]):
            for path in sorted((root / split / folder).glob("*_0*.jpg")):
                with Image.open(path) as image:
                    for _ in range(3):
                        rows.append(transform(image.convert("RGB")).mean(dim=(1, 2)).numpy())
                        labels.append(index)
        return np.array(rows), np.array(labels)

    train_x, train_y = features("train")
    valid_x, valid_y = features("valid")
    centroids = np.stack([train_x[train_y == c].mean(0) for c in range(8)])
    predicted = np.argmin(((valid_x[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == valid_y).mean() >= 0.9
    # Neighbouring classes also differ in pattern, not only in hue.
    patterns = list(summary["patterns"].values())
    assert all(a != b for a, b in zip(patterns, patterns[1:], strict=False))


def test_sample_data_command_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["sample-data", "--out", str(out), "--classes", "2", "--per-class", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"to {out}" in printed and "train: 4  valid: 4  test: 4" in printed
    assert "001.Affenpinscher" in printed and "Affenpinscher_empty.jpg" in printed
    counts = Counter(
        p.relative_to(out).parts[0] for p in Path(out).rglob("*.jpg") if p.stat().st_size
    )
    assert counts["valid"] == counts["test"] == 4


def test_sample_data_refuses_a_folder_that_already_has_files(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert cli.main(["sample-data", "--out", str(tmp_path)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--classes", "1"], "class count"),
        (["--classes", "134"], "class count"),
        (["--per-class", "0"], "count"),
        (["--size", "huge"], "invalid choice"),
    ],
)
def test_sample_data_refuses_bad_arguments_in_one_line(tmp_path, capsys, argv, words):
    assert cli.main(["sample-data", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
