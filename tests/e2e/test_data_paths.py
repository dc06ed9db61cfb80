"""dogbreed_jobs/data.py: both decoding paths give the reference transforms' tensors, on the CPU.

`--decode workers` finishes images in the loader workers; `--decode device` decodes, crops and
resizes them where the model is (here the CPU, on a GPU nvJPEG). Both must give exactly what
the composed `train_transform` / `eval_transform` give on Pillow's decoding of the file, with
the same labels, in the same order, for every epoch and any number of workers.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.paths import SCRIPTS
from PIL import Image

from dogbreed_jobs.data import (
    ImageFiles,
    SetupError,
    derive_seed,
    load_data,
    read_image,
)
from dogbreed_jobs.distributed import Runtime
from dogbreed_jobs.transforms import eval_transform, to_rgb, train_transform
from pipeline.sample_data import photo_like

IMAGE_SIZE = 48
CLASSES = ("001.Alpha", "002.Beta", "003.Gamma")


def _write(image: Image.Image, path: Path, kind: str) -> None:
    """One file of `kind`: most are plain JPEGs (what preparation writes); the rest are the
    files a user may train on without preparation, which the workers must decode with Pillow."""
    if kind == "jpeg":
        image.save(path.with_suffix(".jpg"), quality=90)
    elif kind == "gray":
        image.convert("L").save(path.with_suffix(".jpg"), quality=90)
    elif kind == "cmyk":
        image.convert("CMYK").save(path.with_suffix(".jpg"), quality=90)
    elif kind == "rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # stored sideways: exif_transpose turns it upright
        image.save(path.with_suffix(".jpg"), quality=90, exif=exif)
    elif kind == "png":
        image.convert("RGBA").save(path.with_suffix(".png"))
    else:
        raise ValueError(kind)


KINDS = ("jpeg",) * 5 + ("gray", "cmyk", "rotated", "png")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("paths")
    rng = np.random.default_rng(7)
    for split, count in (("train", 9), ("valid", 4)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                width, height = (int(v) for v in rng.integers(50, 130, size=2))
                kind = KINDS[(i + c) % len(KINDS)]
                _write(photo_like(rng, width, height), folder / f"image_{i}", kind)
    return root


def _args(folders: Path, decode: str, workers: int, batch_size: int = 5) -> argparse.Namespace:
    return argparse.Namespace(
        train_dir=str(folders / "train"),
        valid_dir=str(folders / "valid"),
        image_size=IMAGE_SIZE,
        batch_size=batch_size,
        # The batches these tests compare are their own: no cap to the data.
        min_steps_per_epoch=1,
        seed=11,
        workers=workers,
        decode=decode,
    )


CPU = Runtime(rank=0, world_size=1, local_rank=0, local_world_size=1, device=torch.device("cpu"))


def _epochs(folders: Path, decode: str, workers: int, epochs=(1, 2)):
    data = load_data(_args(folders, decode, workers), CPU)
    batches = {}
    for epoch in epochs:
        data.train_sampler.set_epoch(epoch)
        batches[epoch] = list(data.train_loader)
    batches["valid"] = list(data.valid_loader)
    return data, batches


def _reference(path: str, key, train: bool, seed: int) -> torch.Tensor:
    with Image.open(path) as image:
        rgb = to_rgb(image)
    if not train:
        return eval_transform(IMAGE_SIZE)(rgb)
    epoch, index = key
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, epoch, index))
        return train_transform(IMAGE_SIZE)(rgb)


@pytest.mark.parametrize("workers", [0, 2])
def test_both_paths_give_the_composed_transforms_tensors_and_labels(folders, workers):
    data, by_workers = _epochs(folders, "workers", workers)
    _, on_device = _epochs(folders, "device", workers)
    train_set = data.train_loader.loader.dataset
    valid_set = data.valid_loader.loader.dataset.dataset
    for epoch in (1, 2):
        data.train_sampler.set_epoch(epoch)
        keys = list(data.train_sampler)[:25]  # 27 images, batch 5: the loader drops 2
        expected = [
            (_reference(train_set.samples[i][0], (e, i), True, 11), train_set.samples[i][1])
            for e, i in keys
        ]
        for path_batches in (by_workers[epoch], on_device[epoch]):
            images = torch.cat([images for images, _ in path_batches])
            targets = torch.cat([targets for _, targets in path_batches])
            assert len(images) == len(expected) == 25
            assert torch.equal(images, torch.stack([tensor for tensor, _ in expected]))
            assert targets.tolist() == [label for _, label in expected]
    valid_expected = torch.stack([_reference(p, None, False, 0) for p, _ in valid_set.samples])
    for path_batches in (by_workers["valid"], on_device["valid"]):
        assert torch.equal(torch.cat([images for images, _ in path_batches]), valid_expected)
        assert torch.cat([t for _, t in path_batches]).tolist() == [
            label for _, label in valid_set.samples
        ]


def test_epochs_draw_different_crops_and_the_same_seed_draws_the_same(folders):
    _, first = _epochs(folders, "device", 0)
    _, again = _epochs(folders, "device", 0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first[1], again[1], strict=True)), (
        "same seed, same epoch: same batches"
    )
    assert not torch.equal(first[1][0][0], first[2][0][0])


def test_batches_are_normalised_float_in_the_requested_memory_format(folders):
    data = load_data(_args(folders, "workers", 0), CPU, torch.channels_last)
    data.train_sampler.set_epoch(1)
    images, targets = next(iter(data.train_loader))
    assert images.dtype == torch.float32 and targets.dtype == torch.int64
    assert images.shape == (5, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert -3 < float(images.min()) < 0 < float(images.max()) < 3


def test_plain_jpegs_stay_encoded_and_everything_else_is_decoded_upright(folders):
    kinds = {}
    for path in sorted((folders / "train" / CLASSES[0]).iterdir()):
        payload, encoded, (height, width) = read_image(str(path))
        with Image.open(path) as image:
            upright = to_rgb(image)
        assert (width, height) == upright.size
        kinds[path.name] = encoded
        if not encoded:
            assert payload.shape == (3, height, width) and payload.dtype == torch.uint8
            assert torch.equal(payload, torch.from_numpy(np.array(upright)).permute(2, 0, 1))
        else:
            assert bytes(payload.numpy()) == path.read_bytes()
    # Five of the nine kinds are plain JPEGs; gray, CMYK, EXIF-rotated and PNG are not.
    assert sum(kinds.values()) == 5, kinds


def test_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    from dogbreed_jobs import data

    path = tmp_path / "big.jpg"
    Image.new("RGB", (40, 30)).save(path)
    monkeypatch.setattr(data, "DEFAULT_MAX_PIXELS", 1000)
    with pytest.raises(ValueError, match=r"big\.jpg: 40x30 exceeds 1000 pixels"):
        read_image(str(path))


def test_training_crops_come_from_the_seed_epoch_and_index_only(folders):
    # ImageFiles reads only `.samples` from its listing: another ImageFiles will do.
    listing = load_data(_args(folders, "device", 0), CPU).train_loader.loader.dataset
    dataset = ImageFiles(listing, IMAGE_SIZE, True, False, seed=11)
    assert dataset[(3, 4)].crop == dataset[(3, 4)].crop
    assert dataset[(3, 4)].crop != dataset[(4, 4)].crop


def test_unknown_decode_value_is_refused_naming_the_argument(capsys):
    from dogbreed_jobs import train

    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--train_dir", "/t", "--valid_dir", "/v", "--decode", "gpu"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "argument --decode: expected one of workers, device, got 'gpu'" in message


def test_a_batch_over_the_data_is_capped_and_too_few_images_fail_with_a_setup_error(folders):
    images = 9 * len(CLASSES)
    args = _args(folders, "device", 0, batch_size=500)
    data = load_data(args, CPU)
    assert args.batch_size <= images
    assert len(next(iter(data.train_loader))[0]) == args.batch_size
    # One image for each of so many processes: no batch can be formed.
    crowded = Runtime(
        rank=0, world_size=images, local_rank=0, local_world_size=1, device=CPU.device
    )
    with pytest.raises(SetupError, match="1 training image"):
        load_data(_args(folders, "device", 0), crowded)


def _metric_lines(folders: Path, workdir: Path, decode: str) -> list[str]:
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--train_dir",
            str(folders / "train"),
            "--valid_dir",
            str(folders / "valid"),
            "--model_name",
            "resnet18",
            "--pretrained",
            "false",
            "--image_size",
            "32",
            "--hidden_units",
            "16",
            "--batch_size",
            "9",
            "--epochs",
            "2",
            "--workers",
            "1",
            "--decode",
            decode,
            "--model_dir",
            str(workdir / "model"),
            "--output_data_dir",
            str(workdir / "out"),
            "--checkpoint_dir",
            "none",
        ],  # fmt: skip
        cwd=SCRIPTS,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"decoding on {'the CPU' if decode == 'device' else 'the workers'}" in proc.stdout
    return [line for line in proc.stdout.splitlines() if re.match(r"METRICS ", line)]


def test_train_script_learns_the_same_with_either_decode_path(folders, tmp_path):
    workers = _metric_lines(folders, tmp_path / "w", "workers")
    device = _metric_lines(folders, tmp_path / "d", "device")
    assert len(workers) == 2
    assert workers == device


def test_reference_decoders_agree_on_a_plain_jpeg():
    """The premise of the workers path: torchvision's decoder gives Pillow's pixels."""
    from torchvision.io import decode_jpeg

    buffer = io.BytesIO()
    photo_like(np.random.default_rng(0), 321, 243).save(buffer, "JPEG", quality=85)
    data = buffer.getvalue()
    pillow = torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB")))
    assert torch.equal(
        decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8)),
        pillow.permute(2, 0, 1),
    )
