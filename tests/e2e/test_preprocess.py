"""scripts/preprocess.py on generated ImageFolders: real files, real decoding, no mocks."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers.datagen import class_folders, make_image, make_imagefolder
from helpers.paths import SCRIPTS
from PIL import Image

from dogbreed_jobs import contract, preprocess

# The entry file the job starts; the package module beside it runs nothing as a script.
SCRIPT = SCRIPTS / contract.PREPROCESS_SCRIPT
FOLDERS = class_folders(3)
FIRST = FOLDERS[0]


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_imagefolder(
        tmp_path / "in", num_classes=3, per_split={"train": 3, "valid": 2, "test": 2}
    )


def run(input_dir: Path, output_dir: Path, *extra: str) -> None:
    args = ["--input-dir", str(input_dir), "--output-dir", str(output_dir)]
    assert preprocess.main([*args, "--workers", "1", *extra]) == 0


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def skipped_reasons(output: Path) -> dict[str, str]:
    return {e["path"]: e["reason"] for e in read_json(output / "meta" / "report.json")["skipped"]}


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def jpeg_bytes(image: Image.Image, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **save_args)
    return buffer.getvalue()


def png_header_of_huge_image(width: int, height: int) -> bytes:
    """A valid PNG header announcing width x height, followed by almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def halves(size: tuple[int, int], left, right, mode: str = "RGB") -> Image.Image:
    image = Image.new(mode, size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def add_bad_and_odd_files(root: Path, outside: Path) -> None:
    """One file of every awkward kind in train/<first class> and around it."""
    target = root / "train" / FIRST
    good = jpeg_bytes(make_image(0, 3, random.Random(1)))
    (target / "zero.jpg").write_bytes(b"")
    (target / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (target / "notes.jpg").write_text("not a picture\n")
    halves((40, 20), (0, 0, 0, 0), (0, 255, 0, 255), "RGBA").save(target / "alpha.png")
    Image.new("CMYK", (30, 30), (0, 255, 255, 0)).save(target / "cmyk.jpg")
    Image.fromarray(np.full((20, 20), 32768, dtype=np.uint16)).save(target / "deep.png")
    palette = Image.new("P", (20, 20), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.save(target / "palette.gif")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    halves((60, 30), (255, 0, 0), (0, 0, 255)).save(target / "rotated.jpg", exif=exif)
    Image.new("RGB", (120, 120), (9, 9, 9)).save(target / "big.png")
    (target / "bomb.png").write_bytes(png_header_of_huge_image(30000, 30000))
    (target / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (target / "._rotated.jpg").write_bytes(good)
    (target / ".ipynb_checkpoints").mkdir()
    (target / ".ipynb_checkpoints" / "x.jpg").write_bytes(good)
    outside.write_bytes(good)
    (target / "escape.jpg").symlink_to(outside)
    in_tree = sorted((root / "valid" / FIRST).iterdir())[0]
    (target / "inside.jpg").symlink_to(os.path.relpath(in_tree, target))
    (target / "broken.jpg").symlink_to("nowhere.jpg")
    (root / "train" / "stray.jpg").write_bytes(good)
    (root / "README.txt").write_text("dogs\n")


# Written with --max-pixels 10000: the generated photos are at most 90 x 90.
BAD_FILE_OUTCOMES = {
    f"train/{FIRST}/zero.jpg": "empty file",
    f"train/{FIRST}/truncated.jpg": "truncated or corrupt image",
    f"train/{FIRST}/notes.jpg": "not an image",
    f"train/{FIRST}/big.png": "too many pixels",
    f"train/{FIRST}/bomb.png": "too many pixels",
    f"train/{FIRST}/.DS_Store": "hidden file",
    f"train/{FIRST}/._rotated.jpg": "hidden file",
    f"train/{FIRST}/.ipynb_checkpoints": "hidden folder",
    f"train/{FIRST}/escape.jpg": "link outside the input tree",
    f"train/{FIRST}/broken.jpg": "broken link",
    "train/stray.jpg": "not in a class folder",
    "README.txt": "not in train/ valid/ test/",
}


def test_every_bad_or_odd_file_is_written_or_skipped_with_its_reason(dataset, tmp_path, capsys):
    add_bad_and_odd_files(dataset, tmp_path / "outside.jpg")
    out = tmp_path / "out"
    run(dataset, out, "--max-pixels", "10000")
    # One NOTICE line (the local runner shows it on its console) with the count and reasons.
    (notice,) = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("NOTICE ")
    ]
    assert f"skipped {len(BAD_FILE_OUTCOMES)} file(s)" in notice
    assert "too many pixels: 2" in notice and "meta/report.json" in notice

    assert skipped_reasons(out) == BAD_FILE_OUTCOMES
    written = sorted(p.name for p in (out / "train" / FIRST).iterdir())
    converted = ["alpha.jpg", "cmyk.jpg", "deep.jpg", "inside.jpg", "palette.jpg", "rotated.jpg"]
    assert [name for name in written if not name.startswith(FIRST.split(".")[1])] == converted
    manifest = read_json(out / "meta" / "manifest.json")
    assert manifest["splits"]["train"][FIRST] == 3 + len(converted)
    counts = read_json(out / "meta" / "report.json")["counts"]
    in_train = sum(path.startswith("train/") for path in BAD_FILE_OUTCOMES)
    assert counts["skipped"] == {"train": in_train, "valid": 0, "test": 0}
    assert counts["skipped_by_reason"]["too many pixels"] == 2


def test_odd_image_modes_become_faithful_upright_rgb_jpegs(dataset, tmp_path):
    add_bad_and_odd_files(dataset, tmp_path / "outside.jpg")
    out = tmp_path / "out"
    run(dataset, out, "--max-pixels", "10000")
    folder = out / "train" / FIRST

    def pixel(name: str, xy: tuple[int, int]) -> tuple[int, int, int]:
        with Image.open(folder / name) as image:
            assert (image.format, image.mode) == ("JPEG", "RGB")
            return image.getpixel(xy)

    # Transparent pixels are flattened on white, not black.
    assert min(pixel("alpha.jpg", (5, 10))) > 235
    green = pixel("alpha.jpg", (35, 10))
    assert green[1] > 200 and green[0] < 60 and green[2] < 60
    red = pixel("cmyk.jpg", (15, 15))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    # Half of the 16-bit range is mid grey, not the white of a plain convert("RGB").
    assert all(120 <= channel <= 136 for channel in pixel("deep.jpg", (10, 10)))
    blue = pixel("palette.jpg", (10, 10))
    assert blue[2] > 200 and blue[0] < 60 and blue[1] < 60
    # 60 x 30 stored with "rotate 90 clockwise": upright it is 30 x 60, the left half on top.
    with Image.open(folder / "rotated.jpg") as rotated:
        assert rotated.size == (30, 60)
        assert 0x0112 not in rotated.getexif()
        top, bottom = rotated.getpixel((15, 5)), rotated.getpixel((15, 55))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_huge_image_header_is_rejected_before_decoding_at_the_default_limit(dataset, tmp_path):
    # Decoding would need 2.7 GB and then fail as truncated: "too many pixels" proves that
    # the size came from the header alone.
    (dataset / "valid" / FIRST / "bomb.png").write_bytes(png_header_of_huge_image(30000, 30000))
    (dataset / "test" / FIRST / "tall.png").write_bytes(png_header_of_huge_image(10, 9_000_000))
    out = tmp_path / "out"
    run(dataset, out)
    assert skipped_reasons(out) == {
        f"valid/{FIRST}/bomb.png": "too many pixels",
        f"test/{FIRST}/tall.png": "too many pixels",
    }


def test_clashing_output_names_are_resolved_deterministically(dataset, tmp_path):
    target = dataset / "train" / FIRST
    Image.new("RGB", (20, 20), (255, 0, 0)).save(target / "a.jpg")
    Image.new("RGB", (20, 20), (0, 0, 255)).save(target / "a.png")
    Image.new("RGB", (20, 20), (0, 255, 0)).save(target / "a_png.jpg")
    out = tmp_path / "out"
    run(dataset, out)

    def colour(name: str) -> tuple[int, int, int]:
        with Image.open(out / "train" / FIRST / name) as image:
            return tuple(round(c / 255) * 255 for c in image.getpixel((10, 10)))

    assert colour("a.jpg") == (255, 0, 0)
    assert colour("a_png.jpg") == (0, 255, 0)
    assert colour("a_png_2.jpg") == (0, 0, 255)
    assert read_json(out / "meta" / "report.json")["renamed"] == [
        {"path": f"train/{FIRST}/a.png", "output": f"train/{FIRST}/a_png_2.jpg"}
    ]


def test_max_side_downsizes_the_shorter_side_and_keeps_small_images(dataset, tmp_path):
    target = dataset / "valid" / FIRST
    colours = {"wide": (200, 40, 40), "tall": (40, 200, 40), "small": (40, 40, 200)}
    # 401 x 301 decodes at reduced scale as 101 x 76: the size must still follow the header.
    Image.new("RGB", (401, 301), colours["wide"]).save(target / "wide.jpg", quality=95)
    Image.new("RGB", (300, 400), colours["tall"]).save(target / "tall.png")
    Image.new("RGB", (40, 30), colours["small"]).save(target / "small.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (400, 200), (90, 90, 90)).save(target / "turned.jpg", exif=exif)
    out = tmp_path / "out"
    run(dataset, out, "--max-side", "50")

    sizes = {}
    for name in ("wide", "tall", "small", "turned"):
        with Image.open(out / "valid" / FIRST / f"{name}.jpg") as image:
            sizes[name] = image.size
            mean = np.asarray(image).reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - colours.get(name, (90, 90, 90))).max() < 8, name
    assert sizes == {"wide": (67, 50), "tall": (50, 67), "small": (40, 30), "turned": (50, 100)}
    assert read_json(out / "meta" / "manifest.json")["settings"]["max_side"] == 50


def test_output_is_byte_identical_with_one_or_two_workers(dataset, tmp_path):
    add_bad_and_odd_files(dataset, tmp_path / "outside.jpg")
    for worker_count in ("1", "2"):
        args = ["--input-dir", str(dataset), "--output-dir", str(tmp_path / worker_count)]
        assert preprocess.main([*args, "--workers", worker_count, "--max-side", "40"]) == 0
    one, two = files_under(tmp_path / "1"), files_under(tmp_path / "2")
    assert len(one) > 20
    assert one.keys() == two.keys()
    assert [name for name in one if one[name] != two[name]] == []


def test_class_names_and_manifest_follow_sorted_folders(tmp_path):
    root = make_imagefolder(tmp_path / "in", 3, {"train": 2, "valid": 1, "test": 1})
    rng = random.Random(3)
    for split, count in (("train", 2), ("valid", 1), ("test", 0)):
        (root / split / "Beagle").mkdir()
        for number in range(count):
            make_image(1, 3, rng).save(root / split / "Beagle" / f"beagle_{number}.jpg")
    out = tmp_path / "out"
    run(root, out)

    names = ["Affenpinscher", "Afghan_hound", "Airedale_terrier", "Beagle"]
    for place in ("meta", "train", "valid", "test"):
        assert read_json(out / place / "class_names.json") == names
    manifest = read_json(out / "meta" / "manifest.json")
    assert manifest["classes"] == [
        {"index": index, "folder": folder, "name": name}
        for index, (folder, name) in enumerate(zip([*FOLDERS, "Beagle"], names, strict=True))
    ]
    assert manifest["splits"] == {
        "train": {**dict.fromkeys(FOLDERS, 2), "Beagle": 2},
        "valid": {**dict.fromkeys(FOLDERS, 1), "Beagle": 1},
        "test": {**dict.fromkeys(FOLDERS, 1), "Beagle": 0},
    }
    assert manifest["totals"] == {"train": 8, "valid": 4, "test": 3, "all": 15}
    # An empty class keeps its folder, so every split lists the same class folders.
    assert (out / "test" / "Beagle").is_dir()


def zip_tree(source: Path, archive: Path, extra: dict[str, bytes] | None = None) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(source.parent).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return archive


def test_zip_with_a_wrapper_folder_is_prepared_by_the_script(tmp_path):
    source = make_imagefolder(
        tmp_path / "src" / "dogImages", 3, {"train": 2, "valid": 1, "test": 1}
    )
    # macOS zips carry resource forks in __MACOSX/: it must not count as a second dataset.
    macos_fork = {"__MACOSX/train/._x.jpg": b"\0\5\26\7"}
    zip_tree(source, tmp_path / "in" / "dogImages.zip", macos_fork)
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--input-dir",
            str(tmp_path / "in"),
            "--output-dir",
            str(out),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "train:" in done.stdout and "6 written" in done.stdout
    assert read_json(out / "meta" / "manifest.json")["totals"]["all"] == 12
    report = read_json(out / "meta" / "report.json")
    assert report["source"] == "dogImages.zip:dogImages/"
    assert report["skipped"] == []
    # The extraction scratch space inside the output root is gone.
    assert sorted(p.name for p in out.iterdir()) == ["meta", "test", "train", "valid"]


def test_zip_entry_escaping_the_folder_is_refused_and_nothing_is_written(tmp_path):
    source = make_imagefolder(
        tmp_path / "src" / "dogImages", 2, {"train": 1, "valid": 1, "test": 1}
    )
    zip_tree(source, tmp_path / "in" / "dogImages.zip", {"../escaped.txt": b"gotcha"})
    out = tmp_path / "work" / "out"
    with pytest.raises(SystemExit, match=r"refusing the archive dogImages\.zip: .*\.\./escaped"):
        run(tmp_path / "in", out)
    assert not out.exists()
    assert not list(tmp_path.rglob("escaped.txt"))


def test_missing_split_stops_the_job_naming_it(dataset, tmp_path):
    shutil.rmtree(dataset / "valid")
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"split valid/ is missing"):
        run(dataset, out)
    assert not out.exists()


def test_class_missing_from_a_split_stops_the_job_naming_split_and_class(dataset, tmp_path):
    shutil.rmtree(dataset / "test" / FOLDERS[1])
    (dataset / "valid" / "009.Extra").mkdir()
    with pytest.raises(SystemExit) as stopped:
        run(dataset, tmp_path / "out")
    message = str(stopped.value.code)
    assert f"class {FOLDERS[1]} is in train/ but missing from test/" in message
    assert "class 009.Extra is in valid/ but missing from train/" in message


def test_class_without_usable_training_images_stops_the_job_and_leaves_no_output(dataset, tmp_path):
    broken = dataset / "train" / FOLDERS[2]
    for path in broken.iterdir():
        path.write_text("not a picture")
    out = tmp_path / "out"
    out.mkdir()
    expected = (
        rf"class {FOLDERS[2]} has no usable training images in train/{FOLDERS[2]} "
        r"\(not an image: 3\)"
    )
    with pytest.raises(SystemExit, match=expected):
        run(dataset, out)
    # The output root existed before, so it stays, but empty: no split, no scratch folder.
    assert list(out.iterdir()) == []


def test_duplicate_class_names_are_refused(dataset, tmp_path):
    for split in ("train", "valid", "test"):
        shutil.copytree(dataset / split / FIRST, dataset / split / ("900." + FIRST.split(".")[1]))
    with pytest.raises(SystemExit, match=r"all give the class name 'Affenpinscher'"):
        run(dataset, tmp_path / "out")


def test_existing_empty_output_folders_are_filled_and_non_empty_ones_refused(dataset, tmp_path):
    out = tmp_path / "out"
    for name in ("train", "valid", "test", "meta"):
        (out / name).mkdir(parents=True)
    run(dataset, out)
    assert len(list((out / "train" / FIRST).iterdir())) == 3
    with pytest.raises(SystemExit, match=r"out/train already exists and is not empty"):
        run(dataset, out)


def test_invalid_dataset_exits_non_zero_with_the_message_on_stderr(dataset, tmp_path):
    shutil.rmtree(dataset / "test")
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--input-dir",
            str(dataset),
            "--output-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "split test/ is missing" in done.stderr
    assert not (tmp_path / "out").exists()


UNICODE_CLASS = "004.Chien de Saint-Hubert é"


def test_animated_gif_tiny_image_and_unicode_names_flow_through(dataset, tmp_path, capsys):
    target = dataset / "train" / FIRST
    # Two frames, red then blue: the first frame is what gets written.
    frames = [Image.new("RGB", (20, 10), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(target / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    Image.new("RGB", (1, 1), (0, 200, 0)).save(target / "dot.png")
    for number, split in enumerate(("train", "valid", "test")):
        folder = dataset / split / UNICODE_CLASS
        folder.mkdir()
        make_image(1, 4, random.Random(number)).save(folder / "photo 1 (copy).JPG", "JPEG")
    out = tmp_path / "out"
    run(dataset, out)

    assert skipped_reasons(out) == {}
    with Image.open(out / "train" / FIRST / "anim.jpg") as anim:
        assert (anim.format, anim.mode, anim.size) == ("JPEG", "RGB", (20, 10))
        assert getattr(anim, "n_frames", 1) == 1
        red = anim.getpixel((10, 5))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    with Image.open(out / "train" / FIRST / "dot.jpg") as dot:
        assert (dot.format, dot.mode, dot.size) == ("JPEG", "RGB", (1, 1))
        green = dot.getpixel((0, 0))
    assert green[1] > 150 and green[0] < 60 and green[2] < 60

    names = ["Affenpinscher", "Afghan_hound", "Airedale_terrier", "Chien de Saint-Hubert é"]
    for place in ("meta", "train", "valid", "test"):
        assert read_json(out / place / "class_names.json") == names
    manifest = read_json(out / "meta" / "manifest.json")
    assert manifest["classes"][3] == {"index": 3, "folder": UNICODE_CLASS, "name": names[3]}
    for split in ("train", "valid", "test"):
        assert manifest["splits"][split][UNICODE_CLASS] == 1
        written = out / split / UNICODE_CLASS / "photo 1 (copy).jpg"
        with Image.open(written) as image:
            assert (image.format, image.mode) == ("JPEG", "RGB")
    assert manifest["splits"]["train"][FIRST] == 3 + 2
    assert "4 classes" in capsys.readouterr().out


def test_empty_class_folder_in_valid_is_reported_and_kept_empty(dataset, tmp_path, capsys):
    for path in (dataset / "valid" / FIRST).iterdir():
        path.unlink()
    out = tmp_path / "out"
    run(dataset, out)

    summary = capsys.readouterr().out
    assert f"valid:      4 written,    0 skipped; no images for 1 classes: {FIRST}" in summary
    manifest = read_json(out / "meta" / "manifest.json")
    assert manifest["splits"]["valid"] == {FIRST: 0, FOLDERS[1]: 2, FOLDERS[2]: 2}
    assert manifest["totals"] == {"train": 9, "valid": 4, "test": 6, "all": 19}
    assert (out / "valid" / FIRST).is_dir()
    assert list((out / "valid" / FIRST).iterdir()) == []
    assert read_json(out / "valid" / "class_names.json") == [
        "Affenpinscher",
        "Afghan_hound",
        "Airedale_terrier",
    ]
    assert read_json(out / "meta" / "report.json")["skipped"] == []


def test_upright_rgb_photos_come_out_as_through_to_rgb(dataset, tmp_path):
    # Upright RGB images skip to_rgb (it would only copy them): the bytes written must be the
    # ones the general path gives, resized or not, with an orientation tag of 1 or none.
    from dogbreed_jobs.images import to_rgb

    target = dataset / "test" / FIRST
    rng = np.random.default_rng(5)
    upright = Image.Exif()
    upright[0x0112] = 1
    sources = {
        "big.jpg": (Image.fromarray(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)), {}),
        "tagged.jpg": (
            Image.fromarray(rng.integers(0, 256, (120, 70, 3), dtype=np.uint8)),
            {"exif": upright, "comment": b"kept as before"},
        ),
        "small.png": (Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)), {}),
    }
    for name, (image, save_args) in sources.items():
        image.save(target / name, **save_args)
    out = tmp_path / "out"
    run(dataset, out, "--max-side", "40")

    for name in sources:
        with Image.open(target / name) as image:
            size = preprocess.target_size(*image.size, 40)
            if image.format == "JPEG":
                image.draft(None, size)
            rgb = to_rgb(image)
        expected = rgb if rgb.size == size else rgb.resize(size, Image.Resampling.LANCZOS)
        written = (out / "test" / FIRST / f"{Path(name).stem}.jpg").read_bytes()
        assert written == jpeg_bytes(expected, quality=95), name
