"""Training and validation data: listing, decoding, augmentation and batching.

Where the JPEGs are decoded (`train.py --decode`)
    workers  DataLoader worker processes decode each image on the CPU, crop and resize it,
             and hand over 8-bit pixels. Plain RGB JPEGs (all the preparation step writes)
             go through torchvision's libjpeg-turbo decoder, which gives Pillow's pixels
             exactly and faster; anything else goes through Pillow and `to_rgb`.
    device   workers only read the file's bytes and draw its crop; the batch is decoded on the
             GPU (`torchvision.io.decode_jpeg(..., device=...)`, nvJPEG), then cropped and
             resized there. For machines with few CPU cores per GPU. Files that are not plain
             upright RGB JPEGs are still decoded by the workers.
    Either way, the conversion to float and the normalisation run on the training device, on
    whole batches of 8-bit pixels (a quarter of the bytes of float32 through the loader's
    queues, pinned memory and the host-to-device copy), one batch ahead on a side CUDA
    stream so they overlap the previous step's compute.

The crop and flip of training image i in epoch e are drawn from a generator seeded by (seed,
e, i) (see train.py's docstring), before and independently of decoding, so both paths pick the
same crops and flips, and on the CPU they give identical tensors (tests/test_data_paths.py).
On a GPU, resizing 8-bit pixels rounds through float32, so a pixel may differ by one level.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset
from torchvision import datasets
from torchvision.io import ImageReadMode, decode_jpeg

from dogbreed_jobs.contract import CLASS_NAMES_FILE, class_name_of
from dogbreed_jobs.cpus import available_cpus
from dogbreed_jobs.distributed import log
from dogbreed_jobs.learning_checks import MIN_BATCH_SIZE, capped_batch_size
from dogbreed_jobs.transforms import (
    DEFAULT_MAX_PIXELS,
    Crop,
    apply_crop,
    draw_crop,
    eval_geometry,
    normalize_batch,
    to_rgb,
)

DECODE_CHOICES = ("workers", "device")
_ORIENTATION = 0x0112  # EXIF orientation: a rotated photo needs Pillow's exif_transpose


class SetupError(Exception):
    """A hyperparameter or input that makes training impossible, found before it starts."""


def scan_class_folders(directory: str | os.PathLike) -> list[str]:
    """Sorted class folders, ignoring hidden ones (.ipynb_checkpoints, sync leftovers)."""
    return sorted(
        entry.name
        for entry in os.scandir(directory)
        if entry.is_dir() and not entry.name.startswith(".")
    )


class ClassFolders(datasets.ImageFolder):
    """ImageFolder's listing (sorted files, extension filter) with our class-folder rules."""

    def find_classes(self, directory):
        classes = scan_class_folders(directory)
        if not classes:
            raise FileNotFoundError(f"no class folders in {directory}")
        return classes, {name: index for index, name in enumerate(classes)}


def _pil_to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def read_image(path: str) -> tuple[torch.Tensor, bool, tuple[int, int]]:
    """(payload, encoded, (height, width)) of an image file, reading only its header first.

    A plain upright RGB JPEG gives its bytes (encoded); anything else is decoded here with
    Pillow into a CxHxW uint8 RGB tensor. The pixel limit is checked before any decoding.
    """
    with Image.open(path) as image:
        width, height = image.size
        if width * height > DEFAULT_MAX_PIXELS:
            raise ValueError(f"{path}: {width}x{height} exceeds {DEFAULT_MAX_PIXELS} pixels")
        plain = (
            image.format == "JPEG"
            and image.mode == "RGB"
            and image.getexif().get(_ORIENTATION, 1) == 1
        )
        if not plain:
            pixels = _pil_to_tensor(to_rgb(image))
            return pixels, False, (int(pixels.shape[1]), int(pixels.shape[2]))
    return torch.from_numpy(np.fromfile(path, dtype=np.uint8)), True, (height, width)


def decode(payload: torch.Tensor, encoded: bool) -> torch.Tensor:
    return decode_jpeg(payload, mode=ImageReadMode.RGB) if encoded else payload


# ------------------------------------------------------------------------------ samples


@dataclass(frozen=True)
class Sample:
    """One image as a loader worker hands it over.

    `pixels` is the finished image (workers path), or the JPEG's bytes (`encoded`) or the full
    decoded image, still to be cropped (`crop`, or the evaluation geometry when None).
    """

    pixels: torch.Tensor
    target: int
    encoded: bool = False
    finished: bool = True
    crop: Crop | None = None


def derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


class ImageFiles(Dataset):
    """The images of one split, read (and with `decode_in_workers`, finished) per sample.

    Training (`augment`): keys are (epoch, index) and each image's crop and flip are drawn
    from a generator seeded by (seed, epoch, index). Persistent loader workers keep their
    random state from epoch to epoch, so seeding the workers alone would make an epoch's crops
    depend on every earlier epoch, and a resumed run would diverge from the uninterrupted one.
    Validation: keys are indices and the geometry is fixed.
    """

    def __init__(
        self,
        folders: ClassFolders,
        image_size: int,
        augment: bool,
        decode_in_workers: bool,
        seed: int = 0,
    ):
        self.samples = folders.samples
        self.image_size = image_size
        self.augment = augment
        self.decode_in_workers = decode_in_workers
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key) -> Sample:
        epoch, index = key if self.augment else (0, key)
        path, target = self.samples[index]
        payload, encoded, (height, width) = read_image(path)
        crop = None
        if self.augment:
            # fork_rng keeps the main process's stream (dropout on a CPU) untouched when
            # workers=0; seeding only the CPU generator leaves the GPU's alone.
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(derive_seed(self.seed, epoch, index))
                crop = draw_crop(height, width)
        if not self.decode_in_workers:
            return Sample(payload, target, encoded=encoded, finished=False, crop=crop)
        return Sample(finish(decode(payload, encoded), crop, self.image_size), target)


def finish(image: torch.Tensor, crop: Crop | None, image_size: int) -> torch.Tensor:
    """The training crop, or the evaluation geometry, of a decoded CxHxW uint8 image."""
    if crop is not None:
        return apply_crop(image, crop, image_size)
    return eval_geometry(image, image_size)


@dataclass
class Batch:
    """A collated batch before it reaches the device."""

    targets: torch.Tensor
    images: torch.Tensor | None = None  # NxCxSxS uint8, when the workers finished them
    samples: list[Sample] = field(default_factory=list)  # otherwise

    def pin_memory(self) -> Batch:
        # DataLoader(pin_memory=True) calls this on custom batch types.
        if self.images is not None:
            return Batch(self.targets.pin_memory(), self.images.pin_memory())
        pinned = [
            Sample(s.pixels.pin_memory(), s.target, s.encoded, s.finished, s.crop)
            for s in self.samples
        ]
        return Batch(self.targets.pin_memory(), samples=pinned)


def collate(samples: list[Sample]) -> Batch:
    targets = torch.tensor([sample.target for sample in samples], dtype=torch.int64)
    if all(sample.finished for sample in samples):
        return Batch(targets, torch.stack([sample.pixels for sample in samples]))
    return Batch(targets, samples=list(samples))


class DeviceBatches:
    """A loader's batches as normalised float tensors on the device, one batch ahead.

    On a CUDA device the copy, decoding, cropping and normalisation of batch i+1 are queued
    on a side stream before batch i is handed out, so they overlap batch i's compute; the
    training stream waits for them only when it takes the batch.
    """

    def __init__(
        self,
        loader: DataLoader,
        device: torch.device,
        image_size: int,
        memory_format: torch.memory_format = torch.contiguous_format,
        mean=None,
        std=None,
    ):
        self.loader = loader
        self.device = device
        self.image_size = image_size
        self.memory_format = memory_format
        self.norm = {k: v for k, v in (("mean", mean), ("std", std)) if v is not None}
        # The loader's latest iterator (with persistent workers, its only one), so that
        # close() can reach its worker processes.
        self._source = None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None
        pending = None
        self._source = iter(self.loader)
        for batch in self._source:
            with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
                staged = self._stage(batch)
            if pending is not None:
                yield self._take(pending, stream)
            pending = staged
        if pending is not None:
            yield self._take(pending, stream)

    def close(self) -> None:
        """Stop the loader's worker processes now, SIGKILLing any that do not stop.

        Needed because the workers ignore SIGTERM (`_ignore_sigterm`): when an exception
        propagates, its traceback keeps the loader's iterator alive until the interpreter
        exits, and there multiprocessing SIGTERMs its daemonic children and joins them
        without a timeout, so the process would never exit. The iterator's own shutdown
        (what its `__del__` runs) takes its workers' pids off the DataLoader's SIGCHLD
        watch, asks them to stop and joins them; a worker stuck in a read outlives it (the
        SIGTERM it falls back to is ignored) and is killed.
        """
        source, self._source = self._source, None
        # Private torch API (there from 1.x through 2.14); the single-process iterator and
        # a loader never iterated have none.
        shut_down = getattr(source, "_shutdown_workers", None)
        if shut_down is None:
            return
        shut_down()
        for worker in getattr(source, "_workers", ()):
            if worker.is_alive():
                worker.kill()
                worker.join()

    def _stage(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.images is not None:
            images = batch.images.to(self.device, non_blocking=True)
        else:
            images = torch.stack(self._finish_on_device(batch.samples))
        images = normalize_batch(images, memory_format=self.memory_format, **self.norm)
        return images, batch.targets.to(self.device, non_blocking=True)

    def _finish_on_device(self, samples: list[Sample]) -> list[torch.Tensor]:
        encoded = [sample.pixels for sample in samples if sample.encoded]
        # One batched call: nvJPEG decodes the whole batch together on a GPU.
        decoded = iter(
            decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device) if encoded else ()
        )
        images = []
        for sample in samples:
            if sample.encoded:
                image = next(decoded)
            else:
                image = sample.pixels.to(self.device, non_blocking=True)
            images.append(image if sample.finished else finish(image, sample.crop, self.image_size))
        return images

    def _take(self, staged, stream):
        if stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(stream)
            for tensor in staged:
                # The caching allocator must not reuse this memory until the training stream
                # is done with it.
                tensor.record_stream(current)
        return staged


# ------------------------------------------------------------------------------- loaders


class EpochIndexSampler(Sampler):
    """Yields (epoch, index) so each image's augmentation can be seeded by both."""

    def __init__(self, sampler: DistributedSampler):
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def _ignore_sigterm(_worker_id: int) -> None:
    # A SIGTERM sent to the whole process group must reach the main process's handler and
    # let it stop cleanly, not kill the loader workers under it (the DataLoader would raise
    # in the main process before it reached the batch boundary where it stops). So nothing
    # but the main process can end them: Data.close() must run however training ends.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def read_class_names(directory: Path, folders: list[str]) -> list[str]:
    """Names from the channel's class_names.json if any (checked), else from the folders."""
    derived = [class_name_of(folder) for folder in folders]
    path = directory / CLASS_NAMES_FILE
    if not path.is_file():
        return derived
    try:
        names = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SetupError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SetupError(f"{path} must be a JSON list of class names")
    if names != derived:
        first = next(
            (i for i, pair in enumerate(zip(names, derived, strict=False)) if pair[0] != pair[1]),
            min(len(names), len(derived)),
        )
        raise SetupError(
            f"{path} lists {len(names)} classes but {directory} has {len(derived)} class "
            f"folders; they first differ at index {first}: "
            f"{names[first] if first < len(names) else None!r} vs "
            f"{derived[first] if first < len(derived) else None!r}"
        )
    return names


def _class_folders(directory: Path, channel: str) -> list[str]:
    if not directory.is_dir():
        raise SetupError(f"{channel} channel {directory} is not a directory")
    folders = scan_class_folders(directory)
    if not folders:
        raise SetupError(f"{channel} channel {directory} has no class folders")
    return folders


@dataclass
class Data:
    class_names: list[str]
    train_loader: DeviceBatches
    valid_loader: DeviceBatches
    train_sampler: EpochIndexSampler
    num_train: int
    num_valid: int
    workers: int

    def close(self) -> None:
        """Stop both loaders' worker processes (see DeviceBatches.close)."""
        for batches in (self.train_loader, self.valid_loader):
            batches.close()


def resolve_workers(requested: int, local_world_size: int) -> int:
    """`requested`, or (when negative, i.e. auto) this process's share of the CPU cores."""
    if requested >= 0:
        return requested
    return max(1, available_cpus() // max(1, local_world_size))


def load_data(args, runtime, memory_format=torch.contiguous_format) -> Data:
    """Train and valid loaders for this process (`runtime`: rank, world size, device).

    `args` carries train_dir, valid_dir, image_size, batch_size, min_steps_per_epoch, seed,
    workers and decode, as train.py parses them; batch_size is capped to the data here.
    """
    train_dir, valid_dir = Path(args.train_dir), Path(args.valid_dir)
    train_folders = _class_folders(train_dir, "train")
    valid_folders = _class_folders(valid_dir, "valid")
    if valid_folders != train_folders:
        missing = sorted(set(train_folders) - set(valid_folders))
        extra = sorted(set(valid_folders) - set(train_folders))
        raise SetupError(
            f"valid classes differ from train classes: missing from valid {missing}, "
            f"not in train {extra}"
        )
    class_names = read_class_names(train_dir, train_folders)
    if read_class_names(valid_dir, valid_folders) != class_names:
        raise SetupError(f"{valid_dir / CLASS_NAMES_FILE} differs from the train channel's")
    if len(class_names) < 2:
        raise SetupError(f"need at least 2 classes, {train_dir} has {len(class_names)}")

    try:
        train_listing, valid_listing = ClassFolders(str(train_dir)), ClassFolders(str(valid_dir))
    except FileNotFoundError as err:
        raise SetupError(str(err)) from None
    in_workers = args.decode == "workers"
    train_set = ImageFiles(train_listing, args.image_size, True, in_workers, args.seed)
    valid_set = ImageFiles(valid_listing, args.image_size, False, in_workers)

    # drop_last: every rank runs the same number of steps, and no BatchNorm sees a batch of 1.
    shards = DistributedSampler(
        train_set,
        num_replicas=runtime.world_size,
        rank=runtime.rank,
        shuffle=True,
        seed=args.seed,
        drop_last=True,
    )
    if len(shards) < MIN_BATCH_SIZE:
        raise SetupError(
            f"{len(shards)} training image(s) for each of the {runtime.world_size} "
            f"process(es): need at least {MIN_BATCH_SIZE}"
        )
    capped = capped_batch_size(args.batch_size, len(shards), args.min_steps_per_epoch)
    if capped != args.batch_size:
        # Changed in args: the micro-batch plan, checkpoints and history.json see the batch
        # that runs.
        log(
            runtime,
            f"batch_size {args.batch_size} capped to {capped}: {len(shards)} training images a "
            f"process make at least {args.min_steps_per_epoch} optimizer steps an epoch "
            "(--min-steps-per-epoch; dogbreed_jobs/learning_checks.py)",
        )
        args.batch_size = capped
    train_sampler = EpochIndexSampler(shards)
    # Validation is sharded without DistributedSampler's padding, so no image counts twice.
    valid_shard = Subset(valid_set, range(runtime.rank, len(valid_set), runtime.world_size))

    workers = resolve_workers(args.workers, runtime.local_world_size)
    loader_options = {
        "num_workers": workers,
        "collate_fn": collate,
        "pin_memory": runtime.device.type == "cuda",
        "persistent_workers": workers > 0,
        "prefetch_factor": 4 if workers > 0 else None,
        "worker_init_fn": _ignore_sigterm if workers > 0 else None,
    }
    # Own generators: otherwise each new loader iterator draws its base seed from the global
    # generator, and when that happens would depend on where a run was resumed.
    train_loader = DataLoader(
        train_set,
        batch_size=args.batch_size,
        sampler=train_sampler,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
        **loader_options,
    )
    valid_loader = DataLoader(
        valid_shard,
        batch_size=args.batch_size,
        shuffle=False,
        generator=torch.Generator().manual_seed(args.seed),
        **loader_options,
    )
    on_device = {"device": runtime.device, "image_size": args.image_size}
    return Data(
        class_names,
        DeviceBatches(train_loader, memory_format=memory_format, **on_device),
        DeviceBatches(valid_loader, memory_format=memory_format, **on_device),
        train_sampler,
        len(train_set),
        len(valid_set),
        workers,
    )
