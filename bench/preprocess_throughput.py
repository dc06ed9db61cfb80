"""Throughput of the "prepare data" job (scripts/preprocess.py) against its worker count.

Generates a photo-like ImageFolder once (train/ valid/ test/ at 80/10/10 %, 300-800 px
sides), then runs preprocess.py as its processing job does, as a subprocess from scripts/,
into a fresh output folder for each run, timing the wall clock of the whole command
(interpreter start-up, planning, conversion and publishing included).

    .venv/bin/python bench/preprocess_throughput.py [--images 600] [--max-side 320]
        [--workers-list 1,all] [--repeat 3]

One JSON line per run (stat "run"), then per worker count the best and median runs (stat
"best", "median"). `speedup` compares with one worker: for a run, with the one-worker run of
the same round (rounds alternate their order, so both see similar load); for best and
median, with the one-worker best and median. Timings depend on what else the machine runs:
compare figures from the same machine and note its load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import SCRIPTS, Timer, available_cpus, emit, machine, make_image_folder, print_table

SPLITS = (("train", 0.8), ("valid", 0.1), ("test", 0.1))
COLUMNS = ("stat", "workers", "images", "seconds", "images_per_s", "speedup", "max_side")


def parse_workers(text: str) -> list[tuple[str, int]]:
    """`1,all` -> [("1", 1), ("0", cores)]: the --workers value passed and the count it means."""
    counts = []
    for token in (part.strip() for part in text.split(",")):
        if token in ("all", "0"):
            counts.append(("0", available_cpus()))
        elif token.isdigit():
            counts.append((token, int(token)))
        else:
            raise argparse.ArgumentTypeError(f"not a worker count: {token!r}")
    if not counts:
        raise argparse.ArgumentTypeError("no worker counts")
    return counts


def make_dataset(root: Path, images: int, classes: int) -> int:
    """train/ valid/ test/ with `images` pictures in all (at least one per class and split)."""
    total = 0
    for seed, (split, share) in enumerate(SPLITS):
        per_class = max(1, round(images * share / classes))
        make_image_folder(root / split, classes, per_class, seed=seed)
        total += per_class * classes
    return total


def run_once(dataset: Path, output: Path, max_side: int, workers: str) -> float:
    command = [
        sys.executable,
        "preprocess.py",
        "--input-dir",
        str(dataset),
        "--output-dir",
        str(output),
        "--max-side",
        str(max_side),
        "--workers",
        workers,
    ]
    with Timer() as timer:
        done = subprocess.run(command, cwd=SCRIPTS, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"preprocess.py failed ({done.returncode}):\n{done.stderr}")
    shutil.rmtree(output)
    return timer.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600, help="pictures in all three splits")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--max-side", type=int, default=320, help="as the pipeline passes")
    parser.add_argument(
        "--workers-list",
        type=parse_workers,
        default="1,all",
        help="comma-separated --workers values; 'all' is one per available core",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds over the worker counts")
    args = parser.parse_args(argv)
    if args.images < 3 or args.classes < 1 or args.repeat < 1:
        parser.error("--images must be at least 3, --classes and --repeat at least 1")
    workers_list = args.workers_list
    if not any(count == 1 for _, count in workers_list):
        workers_list = [("1", 1), *workers_list]  # the baseline for the speedup

    info = machine()
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as scratch:
        dataset = Path(scratch) / "in"
        images = make_dataset(dataset, args.images, min(args.classes, max(1, args.images // 3)))
        seconds: dict[int, list[float]] = {count: [] for _, count in workers_list}
        records = []
        for round_ in range(args.repeat):
            order = workers_list if round_ % 2 == 0 else workers_list[::-1]
            timed = {}
            for flag, count in order:
                timed[count] = run_once(dataset, Path(scratch) / "out", args.max_side, flag)
                seconds[count].append(timed[count])
            for _, count in workers_list:
                records.append(
                    record("run", count, images, timed[count], timed[1], args.max_side, info)
                    | {"repeat": round_}
                )
                emit(records[-1])
        for stat, pick in (("best", min), ("median", statistics.median)):
            baseline = pick(seconds[1])
            for _, count in workers_list:
                records.append(
                    record(stat, count, images, pick(seconds[count]), baseline, args.max_side, info)
                )
                emit(records[-1])
    print_table(
        records,
        COLUMNS,
        title=f"preprocess.py, {images} photo-like JPEGs, {info['cpus']} cores available, "
        f"load {os.getloadavg()[0]:.2f}",
    )
    return 0


def record(
    stat: str, workers: int, images: int, seconds: float, baseline: float, max_side: int, info
) -> dict:
    return {
        "bench": "preprocess",
        "stat": stat,
        "workers": workers,
        "images": images,
        "seconds": round(seconds, 4),
        "images_per_s": round(images / seconds, 2),
        "speedup": round(baseline / seconds, 3),
        "max_side": max_side,
        **info,
    }


if __name__ == "__main__":
    sys.exit(main())
