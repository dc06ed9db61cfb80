"""Training throughput: is the model fed as fast as it computes?

Three measurements in one run, on the GPU when there is one, else on the CPU:
  compute   the training step alone, on a batch already on the device (the ceiling);
  pipeline  the project's input pipeline (dogbreed_jobs/data.py, as train.py builds it) feeding the
            same step, same model, batch and precision, on a generated JPEG ImageFolder with
            photo-like sizes, first prepared as the pipeline prepares it (scripts/preprocess.py,
            --max-side 320; --max-side 0 trains on the raw files), for each --decode path and
            each --workers count; with --workers W the whole process is also limited to W
            CPUs, the way a W-vCPU instance would be;
  baseline  the typical course script: torchvision ImageFolder on the raw files with PIL
            transforms, fp32, num_workers=0, batch 32.

    python bench/train_throughput.py                     # defaults sized for the device
    python bench/train_throughput.py --workers 16,8,4 --decode workers,device

Prints one JSON object a measurement, then a table; `vs_compute` is pipeline / compute, and
`input_only_images_per_s` is what the same pipeline delivers with no step to feed (what a
faster device could get from these CPUs).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import common
import numpy as np
import torch
from torch import nn

from dogbreed_jobs.data import load_data
from dogbreed_jobs.distributed import Runtime
from dogbreed_jobs.model import build_model
from dogbreed_jobs.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_batch
from pipeline.sample_data import photo_like

# Sized so each figure is steady on the device at hand within a minute or so.
DEFAULTS = {
    "cuda": {"image_size": 224, "batch": 128, "steps": 30, "warmup": 10, "workers": "16,8,4"},
    "cpu": {"image_size": 64, "batch": 16, "steps": 6, "warmup": 2, "workers": "2,1"},
}


def get_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--model", default="densenet161")
    parser.add_argument("--image-size", type=int, help="crop side (default: by device)")
    parser.add_argument("--batch", type=int, help="batch size of compute and pipeline")
    parser.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto")
    parser.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--steps", type=int, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, help="untimed steps first (worker start-up)")
    parser.add_argument("--workers", help="comma-separated loader worker counts")
    parser.add_argument("--decode", default="workers,device", help="comma-separated paths")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--sides", default="300,800", help="min,max photo side in pixels")
    parser.add_argument("--max-side", type=int, default=320, help="preparation's downsizing")
    parser.add_argument("--baseline-batch", type=int, default=32)
    parser.add_argument("--baseline-steps", type=int, help="timed baseline steps")
    parser.add_argument("--skip", default="", help="comma-separated: compute,pipeline,baseline")
    parser.add_argument("--data", type=Path, help="reuse (or keep) the generated data here")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    for name, value in DEFAULTS[args.device].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.baseline_steps = args.baseline_steps or max(2, args.steps // 2)
    args.workers = [int(w) for w in str(args.workers).split(",") if w]
    args.decode = [d for d in args.decode.split(",") if d]
    args.sides = tuple(int(s) for s in args.sides.split(","))
    args.skip = set(filter(None, args.skip.split(",")))
    return args


# ---------------------------------------------------------------------------------- data


def _make_class(job: tuple[Path, int, tuple[int, int], int]) -> None:
    folder, count, sides, seed = job
    # Each class draws from its own seed: the same files for any number of processes.
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(count):
        width, height = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
        photo_like(rng, width, height).save(folder / f"image_{i}.jpg", quality=90)


def generate(root: Path, classes: int, images: int, sides: tuple[int, int]) -> Path:
    """`root/raw/{train,valid,test}/` photo-like JPEGs, generated on every core."""
    raw = root / "raw"
    if (raw / "train").is_dir():
        return raw
    per_class = -(-images // classes)
    jobs = [
        (raw / split / f"{k + 1:03d}.class_{k}", count, sides, 1000 * s + k)
        for s, (split, count) in enumerate((("train", per_class), ("valid", 2), ("test", 1)))
        for k in range(classes)
    ]
    with ProcessPoolExecutor(common.available_cpus()) as pool:
        list(pool.map(_make_class, jobs))
    return raw


def prepare(raw: Path, root: Path, max_side: int) -> tuple[Path, float]:
    """The pipeline's data preparation of `raw` (seconds), or `raw` itself when max_side=0."""
    if not max_side:
        return raw, 0.0
    prepared = root / f"prepared-{max_side}"
    if (prepared / "train").is_dir():
        return prepared, 0.0
    with common.Timer() as timer:
        subprocess.run(
            [
                sys.executable,
                "preprocess.py",
                "--input-dir",
                str(raw),
                "--output-dir",
                str(prepared),
                "--max-side",
                str(max_side),
            ],  # fmt: skip
            cwd=common.SCRIPTS,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return prepared, timer.seconds


# ------------------------------------------------------------------------------ training


class Step:
    """One optimiser step of `model` at the given precision and memory format."""

    def __init__(self, args, device: torch.device, num_classes: int):
        cuda = device.type == "cuda"
        self.dtype = {
            "bf16": torch.bfloat16,
            "fp16": torch.float16,
            "off": None,
            "auto": torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else None,
        }[args.amp]
        self.channels_last = args.channels_last == "on" or (args.channels_last == "auto" and cuda)
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.device = device
        torch.manual_seed(0)
        self.model = build_model(args.model, num_classes, pretrained=False).to(
            device, memory_format=self.memory_format
        )
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.criterion = nn.CrossEntropyLoss()
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        if cuda:
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        with torch.autocast(self.device.type, self.dtype, enabled=self.dtype is not None):
            loss = self.criterion(self.model(images), targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @property
    def precision(self) -> str:
        return str(self.dtype).replace("torch.", "") if self.dtype else "fp32"


def timed(step: Step, batches, warmup: int, steps: int) -> float:
    """Images a second over `steps` steps after `warmup` untimed ones."""
    iterator = iter(batches)
    for _ in range(warmup):
        step(*next(iterator))
    step.sync()
    started, images = time.perf_counter(), 0
    for _ in range(steps):
        batch = next(iterator)
        step(*batch)
        images += len(batch[1])
    step.sync()
    return images / (time.perf_counter() - started)


def _endless(data):
    epoch = 1
    while True:
        data.train_sampler.set_epoch(epoch)
        yield from data.train_loader
        epoch += 1


@contextlib.contextmanager
def cpus_limited_to(count: int):
    """This process (and the loader workers it forks) on `count` CPUs, like a small instance."""
    if not hasattr(os, "sched_setaffinity"):
        yield common.available_cpus()
        return
    before = os.sched_getaffinity(0)
    chosen = sorted(before)[: max(1, count)]
    os.sched_setaffinity(0, chosen)
    # torch's intra-op pool was sized for the whole machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(len(chosen))
    try:
        yield len(chosen)
    finally:
        os.sched_setaffinity(0, before)
        torch.set_num_threads(threads)


def measure_pipeline(step: Step, folder: Path, args, decode: str, workers: int) -> dict:
    loader_args = argparse.Namespace(
        train_dir=str(folder / "train"),
        valid_dir=str(folder / "valid"),
        image_size=args.image_size,
        batch_size=args.batch,
        # The batch measured is the one asked for, however few the generated images.
        min_steps_per_epoch=1,
        seed=0,
        workers=workers,
        decode=decode,
    )
    with cpus_limited_to(max(1, workers)) as cpus:
        one_process = Runtime(
            rank=0, world_size=1, local_rank=0, local_world_size=1, device=step.device
        )
        data = load_data(loader_args, one_process, step.memory_format)
        rate = timed(step, _endless(data), args.warmup, args.steps)
        # The same pipeline with nothing to feed: what it could deliver to a faster model.
        alone = timed(_NoStep(step), _endless(data), args.warmup, args.steps)
        del data
    return {
        "decode": decode, "workers": workers, "cpus": cpus, "images_per_s": rate,
        "input_only_images_per_s": alone,
    }  # fmt: skip


class _NoStep:
    """Consumes batches the way `Step` does, without computing anything."""

    def __init__(self, step: Step):
        self.sync = step.sync

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        pass


def measure_baseline(step: Step, raw: Path, args) -> tuple[float, float]:
    """The course script's loop: PIL transforms in the main process, fp32, batch 32."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(args.image_size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    dataset = datasets.ImageFolder(str(raw / "train"), transform=transform)
    loader = DataLoader(dataset, batch_size=args.baseline_batch, shuffle=True, num_workers=0)

    def batches():
        while True:
            for images, targets in loader:
                yield images.to(step.device), targets.to(step.device)

    return (
        timed(step, batches(), 1, args.baseline_steps),
        timed(_NoStep(step), batches(), 1, args.baseline_steps),
    )


def main(argv=None) -> int:
    args = get_args(argv)
    device = torch.device(args.device)
    machine = common.machine(args.device)
    records = []
    base = {"bench": "train", "model": args.model, "image_size": args.image_size, **machine}

    def emit(**fields) -> None:
        records.append(common.emit({**base, **fields}))

    owned = args.data is None
    root = Path(tempfile.mkdtemp(prefix="train-bench-")) if owned else args.data
    try:
        step = Step(args, device, args.classes)
        shape = {"batch": args.batch, "precision": step.precision}
        shape["channels_last"] = step.channels_last
        compute = None
        if "compute" not in args.skip:
            pixels = torch.randint(0, 256, (args.batch, 3, args.image_size, args.image_size))
            images = normalize_batch(
                pixels.to(device, torch.uint8), memory_format=step.memory_format
            )
            targets = torch.randint(0, args.classes, (args.batch,), device=device)
            compute = timed(step, iter(lambda: (images, targets), None), args.warmup, args.steps)
            emit(case="compute", images_per_s=compute, **shape)
        if args.skip >= {"pipeline", "baseline"}:
            return _report(records)
        images_needed = (args.warmup + args.steps) * max(args.batch, args.baseline_batch)
        with common.Timer() as made:
            raw = generate(root, args.classes, images_needed, args.sides)
        print(f"generated {images_needed} photo-like JPEGs in {made.seconds:.1f}s", file=sys.stderr)
        baseline = None
        if "baseline" not in args.skip:
            baseline_step = Step(
                argparse.Namespace(**{**vars(args), "amp": "off", "channels_last": "off"}),
                device,
                args.classes,
            )
            baseline, alone = measure_baseline(baseline_step, raw, args)
            del baseline_step
            emit(
                case="baseline", images_per_s=baseline, input_only_images_per_s=alone,
                batch=args.baseline_batch,
                precision="fp32", channels_last=False, decode="PIL", workers=0,
            )  # fmt: skip
        if "pipeline" not in args.skip:
            folder, seconds = prepare(raw, root, args.max_side)
            if seconds:
                print(f"prepared (--max-side {args.max_side}) in {seconds:.1f}s", file=sys.stderr)
            for decode in args.decode:
                for workers in args.workers:
                    result = measure_pipeline(step, folder, args, decode, workers)
                    rate = result["images_per_s"]
                    emit(
                        case="pipeline", max_side=args.max_side, **shape, **result,
                        vs_compute=rate / compute if compute else None,
                        vs_baseline=rate / baseline if baseline else None,
                    )  # fmt: skip
        return _report(records)
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)


def _report(records: list[dict]) -> int:
    common.print_table(
        records,
        ["case", "decode", "workers", "cpus", "batch", "precision", "images_per_s", "vs_compute"]
        + ["vs_baseline", "input_only_images_per_s"],
        title=f"training throughput ({records[0].get('gpu') or records[0]['cpu']})"
        if records
        else "",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
