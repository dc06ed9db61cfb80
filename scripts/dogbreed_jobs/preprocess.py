"""Processing job "prepare data": validate and normalise an ImageFolder (or an archive of one).

Input (`--input-dir`): a folder holding `train/ valid/ test/` (at its root or one level below,
like the `dogImages/` wrapper of the reference data), a folder holding one `.zip` or tar of such
a tree, or the archive itself. Each split holds one folder per class (`001.Affenpinscher`).

Output (`--output-dir`): `train/ valid/ test/` with every usable image as an upright RGB JPEG
(optionally downsized), a `class_names.json` in each split, and `meta/` with `class_names.json`,
`manifest.json` and `report.json` (every input file that was not written, and why).

Failure policy: everything is built in a hidden work folder inside the output root and moved
into `train/ valid/ test/ meta/` only once the whole dataset has been processed and validated.
On any error the work folder is removed, so the output never holds a partial result that could
pass for a finished one; `meta/` is moved last, so `meta/manifest.json` marks a complete run.
Existing non-empty output folders are refused rather than merged with.

Determinism: files are listed in sorted order, output names depend only on that listing, and
results are gathered in input order, so the same input gives byte-identical files for any
`--workers`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from dogbreed_jobs.contract import (
    CLASS_NAMES_FILE,
    META_OUTPUT,
    PREPROCESS_OUTPUTS,
    SPLITS,
    class_name_of,
    format_notice,
)
from dogbreed_jobs.cpus import available_cpus
from dogbreed_jobs.images import DEFAULT_MAX_PIXELS, to_rgb
from dogbreed_jobs.layout import (
    Job,
    LayoutError,
    Plan,
    locate_dataset,
    plan,
    require_training_images,
    skip_record,
)

ORIENTATION = 0x0112  # the EXIF tag that ImageOps.exif_transpose applies

# Reasons in report.json found by decoding (the scan's are in layout.py); the summary counts
# by them, so per-file specifics go in "detail".
EMPTY = "empty file"
NOT_IMAGE = "not an image"
CORRUPT = "truncated or corrupt image"
UNSUPPORTED = "unsupported image mode"
TOO_MANY_PIXELS = "too many pixels"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--input-dir",
        default="/opt/ml/processing/input/data",
        help="folder with train/ valid/ test/ (or one level above it), or with one archive of it",
    )
    parser.add_argument(
        "--output-dir",
        default="/opt/ml/processing/output",
        help="root for train/ valid/ test/ meta/",
    )
    parser.add_argument(
        "--max-side",
        type=int,
        default=0,
        help="downsize so the shorter side is at most this many pixels (0 keeps the size)",
    )
    parser.add_argument("--jpeg-quality", type=int, default=95, help="1-100")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="skip images with more pixels than this, read from the header before decoding",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes converting images (0: one per available core, 1: in this process)",
    )
    return parser


@dataclass(frozen=True)
class Settings:
    max_side: int
    jpeg_quality: int
    max_pixels: int


class Unusable(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------- image conversion


def _pixel_limit(max_pixels: int) -> None:
    # Image.open refuses images above twice this and warns above it: with our limit in place
    # of Pillow's default, --max-pixels is the one threshold that applies.
    Image.MAX_IMAGE_PIXELS = max_pixels


@contextlib.contextmanager
def _pixel_limit_in_this_process(max_pixels: int) -> Iterator[None]:
    previous = Image.MAX_IMAGE_PIXELS
    _pixel_limit(max_pixels)
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _decode(path: str, settings: Settings) -> Image.Image:
    """Upright RGB at most `max_side` on its shorter side, or Unusable with the reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except UnidentifiedImageError:
        raise Unusable(NOT_IMAGE) from None
    except Image.DecompressionBombError as err:
        raise Unusable(TOO_MANY_PIXELS, str(err)) from None
    except Exception as err:
        # Pillow's plugins signal malformed headers with many types (SyntaxError, struct.error,
        # ValueError, ...): any of them means this one file is unusable, never the whole job.
        raise Unusable(CORRUPT, f"{type(err).__name__}: {err}") from None
    with image:
        width, height = image.size
        if width * height > settings.max_pixels:
            raise Unusable(TOO_MANY_PIXELS, f"{width}x{height} > {settings.max_pixels} pixels")
        # The final size comes from the header, so a JPEG decoded at reduced scale ends up
        # exactly as large as the same picture stored in any other format.
        size = target_size(width, height, settings.max_side)
        try:
            if size != (width, height) and image.format in ("JPEG", "MPO"):
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale directly, never below this size.
                image.draft(None, size)
            image.load()
            orientation = image.getexif().get(ORIENTATION, 1)
        except Exception as err:
            raise Unusable(CORRUPT, f"{type(err).__name__}: {err}") from None
        if image.mode == "RGB" and orientation == 1:
            # Most photos: to_rgb would hand back two successive copies of them unchanged
            # (about 0.5 of 9 ms CPU per photo, and half the job's system time in page faults
            # for the fresh buffers), so resize them, or copy them before closing, directly.
            if image.size == size:
                return image.copy()
            return image.resize(size, Image.Resampling.LANCZOS)
        upright_swaps_sides = orientation in (5, 6, 7, 8)
        try:
            rgb = to_rgb(image)
        except Exception as err:
            raise Unusable(UNSUPPORTED, f"{image.mode}: {type(err).__name__}: {err}") from None
    if upright_swaps_sides:
        size = size[::-1]
    return rgb if rgb.size == size else rgb.resize(size, Image.Resampling.LANCZOS)


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled so the shorter side is `max_side`, unless already no longer."""
    shorter = min(width, height)
    if not max_side or shorter <= max_side:
        return width, height
    if width <= height:
        return max_side, max(1, round(height * max_side / width))
    return max(1, round(width * max_side / height)), max_side


def convert(job: Job, settings: Settings, out_root: str) -> tuple[str, str] | None:
    """Write one image as JPEG; None when written, else (reason, detail)."""
    if os.path.getsize(job.source) == 0:
        return EMPTY, ""
    try:
        image = _decode(job.source, settings)
    except Unusable as err:
        # Keep the report free of scratch paths, so an archive's report is reproducible.
        return err.reason, err.detail.replace(job.source, job.rel)
    # Outside the try: a failed write (disk full, permissions) must stop the job, not be
    # reported as a bad image. Metadata (EXIF, ICC) is dropped: orientation is already applied
    # and the training decoders ignore colour profiles.
    image.save(Path(out_root, job.out), "JPEG", quality=settings.jpeg_quality)
    return None


def run_jobs(
    jobs: list[Job], settings: Settings, out_root: Path, workers: int
) -> Iterator[tuple[str, str] | None]:
    """Results in job order, converting in `workers` processes (1: in this process)."""
    work = partial(convert, settings=settings, out_root=str(out_root))
    if workers <= 1 or len(jobs) < 2:
        with _pixel_limit_in_this_process(settings.max_pixels):
            yield from map(work, jobs)
        return
    # Chunks amortise the inter-process round trip (a fraction of a millisecond, against about
    # 10 ms per photo), but the last one handed out decides how long the other workers sit
    # idle at the end: with 600 photos on 2 workers, chunks of 37 left up to 0.46 s of one
    # core unused, chunks of 8 at most 0.19 s, while single jobs doubled the parent's CPU time.
    chunksize = max(1, min(8, len(jobs) // (workers * 8)))
    pool = ProcessPoolExecutor(
        max_workers=workers, initializer=_pixel_limit, initargs=(settings.max_pixels,)
    )
    try:
        yield from pool.map(work, jobs, chunksize=chunksize)
    finally:
        # After a failed write (disk full) the queued conversions are pointless: drop them
        # instead of waiting for every one to fail in turn.
        pool.shutdown(cancel_futures=True)


# ---------------------------------------------------------------------------- checks and output


def _require_empty_outputs(output: Path) -> None:
    # SageMaker creates each output's (empty) folder before the job starts: those are fine.
    for name in PREPROCESS_OUTPUTS:
        target = output / name
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise SystemExit(
                f"{target} already exists and is not empty: refusing to mix this run's files "
                "with earlier ones; give an empty --output-dir"
            )


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_meta(
    staged: Path,
    plan_: Plan,
    written: dict[str, dict[str, int]],
    skipped: list[dict],
    display: str,
    settings: Settings,
) -> None:
    names = [class_name_of(folder) for folder in plan_.folders]
    for name in PREPROCESS_OUTPUTS:
        (staged / name).mkdir(parents=True, exist_ok=True)
        _write_json(staged / name / CLASS_NAMES_FILE, names)
    manifest = {
        "classes": [
            {"index": index, "folder": folder, "name": class_name_of(folder)}
            for index, folder in enumerate(plan_.folders)
        ],
        "splits": written,
        "totals": {
            **{split: sum(written[split].values()) for split in SPLITS},
            "all": sum(sum(counts.values()) for counts in written.values()),
        },
        "settings": {
            "max_side": settings.max_side,
            "jpeg_quality": settings.jpeg_quality,
            "max_pixels": settings.max_pixels,
        },
    }
    _write_json(staged / META_OUTPUT / "manifest.json", manifest)
    report = {
        "source": display,
        "skipped": skipped,
        "renamed": plan_.renamed,
        "counts": _counts(written, skipped),
    }
    _write_json(staged / META_OUTPUT / "report.json", report)


def _counts(written: dict[str, dict[str, int]], skipped: list[dict]) -> dict:
    # Entries beside the splits (a README next to train/) count only by reason.
    per_split = Counter(entry["path"].split("/", 1)[0] for entry in skipped)
    return {
        "written": {split: sum(written[split].values()) for split in SPLITS},
        "skipped": {split: per_split[split] for split in SPLITS},
        "skipped_by_reason": dict(sorted(Counter(e["reason"] for e in skipped).items())),
    }


def _publish(staged: Path, output: Path) -> None:
    for name in PREPROCESS_OUTPUTS:
        source, target = staged / name, output / name
        if not target.exists():
            shutil.move(source, target)
            continue
        # An existing (empty) folder may be a mount point: fill it rather than replace it.
        for child in sorted(source.iterdir()):
            shutil.move(child, target / child.name)


def _print_summary(
    display: str,
    plan_: Plan,
    written: dict[str, dict[str, int]],
    skipped: list[dict],
    seconds: float,
    workers: int,
) -> None:
    counts = _counts(written, skipped)
    print(f"prepare data: {len(plan_.folders)} classes from {display}")
    for split in SPLITS:
        empty = [folder for folder in plan_.folders if not written[split][folder]]
        line = (
            f"  {split + ':':6} {counts['written'][split]:6d} written, "
            f"{counts['skipped'][split]:4d} skipped"
        )
        if empty:
            line += f"; no images for {len(empty)} classes: {', '.join(empty[:5])}"
            line += ", ..." if len(empty) > 5 else ""
        print(line)
    if skipped:
        by_reason = ", ".join(f"{r}: {n}" for r, n in counts["skipped_by_reason"].items())
        print(f"  skipped by reason: {by_reason} (details in meta/report.json)")
        print(
            format_notice(
                f"prepare data skipped {len(skipped)} file(s) of {display}: {by_reason} "
                "(details in meta/report.json)"
            )
        )
    print(f"  {seconds:.1f} s with {_workers(workers)}", flush=True)


def _workers(count: int) -> str:
    return f"{count} worker{'s' if count > 1 else ''}"


def _input_names(input_dir: Path) -> Callable[[Path], str] | None:
    """Names of the paths under `input_dir` as the user gave them, the job's S3 URI; None
    where the job's config does not say which input was downloaded there.

    SageMaker writes the job's arguments to /opt/ml/config/processingjobconfig.json (the local
    runner too, under the job's root): the input whose LocalPath is `input_dir` came from S3Uri.
    """
    absolute = input_dir.absolute()
    opt_ml = next((p for p in absolute.parents if p.name == "ml" and p.parent.name == "opt"), None)
    if opt_ml is None:
        return None
    try:
        config = json.loads((opt_ml / "config" / "processingjobconfig.json").read_text())
        inputs = config["ProcessingInputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    local_path = "/" + absolute.relative_to(opt_ml.parent.parent).as_posix()
    uris = [
        item["S3Input"]["S3Uri"]
        for item in inputs
        if isinstance(item, dict)
        and isinstance(item.get("S3Input"), dict)
        and str(item["S3Input"].get("LocalPath", "")).rstrip("/") == local_path
    ]
    if len(uris) != 1 or not isinstance(uris[0], str):
        return None
    uri = uris[0]

    def name(path: Path) -> str:
        rel = path.absolute().relative_to(absolute).as_posix()
        if rel == ".":
            return uri
        # An S3Prefix naming one object arrives as a file of the object's base name.
        if not uri.endswith("/") and uri.rsplit("/", 1)[-1] == rel:
            return uri
        return f"{uri.rstrip('/')}/{rel}"

    return name


def prepare(input_path: Path, output: Path, work: Path, settings: Settings, workers: int) -> None:
    started = time.monotonic()
    root, display = locate_dataset(input_path, work / "extracted", _input_names(input_path))
    plan_ = plan(root, display)

    staged = work / "staged"
    for out_dir in plan_.out_dirs:
        (staged / out_dir).mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers, len(plan_.jobs)))
    print(f"prepare data: converting {len(plan_.jobs)} files with {_workers(workers)}", flush=True)
    written = {split: dict.fromkeys(plan_.folders, 0) for split in SPLITS}
    skipped = list(plan_.skipped)
    # Progress for the job log: a line per tenth of a large dataset, none for a small one.
    step = max(1000, len(plan_.jobs) // 10)
    results = run_jobs(plan_.jobs, settings, staged, workers)
    for done, (job, result) in enumerate(zip(plan_.jobs, results, strict=True), start=1):
        if result is None:
            written[job.split][job.folder] += 1
        else:
            reason, detail = result
            skipped.append(skip_record(job.rel, reason, detail))
        if done % step == 0 and done < len(plan_.jobs):
            print(f"  {done}/{len(plan_.jobs)} files", flush=True)
    skipped.sort(key=lambda entry: entry["path"])

    _print_summary(display, plan_, written, skipped, time.monotonic() - started, workers)
    require_training_images(plan_.folders, written["train"], skipped, display)
    _write_meta(staged, plan_, written, skipped, display, settings)
    _publish(staged, output)


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.max_side < 0:
        parser.error("--max-side must be 0 (keep the size) or a positive number of pixels")
    if not 1 <= args.jpeg_quality <= 100:
        parser.error("--jpeg-quality must be between 1 and 100")
    if args.max_pixels < 1:
        parser.error("--max-pixels must be positive")
    if args.workers < 0:
        parser.error("--workers must be 0 (all cores) or more")
    settings = Settings(args.max_side, args.jpeg_quality, args.max_pixels)

    output = Path(args.output_dir)
    _require_empty_outputs(output)
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    # Inside the output root: same file system, so publishing is a rename, and the scratch
    # space for an extracted archive comes from the volume sized for the data.
    work = Path(tempfile.mkdtemp(prefix=".preprocess-", dir=output))
    finished = False
    try:
        prepare(Path(args.input_dir), output, work, settings, args.workers or available_cpus())
        finished = True
    except LayoutError as err:
        raise SystemExit(str(err)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created and not finished:
            with contextlib.suppress(OSError):
                output.rmdir()
    return 0
