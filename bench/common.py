"""What every benchmark shares: photo-like test data, a machine description, and output.

Each benchmark prints one JSON object per measurement on stdout (so runs can be collected
and compared), then a short aligned table of the same records. Figures are only comparable
between runs on the same machine; `machine()` is printed with them for that reason.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from pipeline.sample_data import photo_like

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str | None = None) -> dict:
    """CPU, cores available to this process, GPU and library versions; no host names."""
    info = {
        "date": datetime.date.today().isoformat(),
        "cpu": _cpu_model(),
        "cpus": available_cpus(),
        "python": platform.python_version(),
    }
    if "torch" in sys.modules or device is not None:
        import torch
        import torchvision

        info["torch"] = torch.__version__
        info["torchvision"] = torchvision.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def make_image_folder(
    root: Path,
    classes: int,
    per_class: int,
    sides: tuple[int, int] = (300, 800),
    seed: int = 0,
    quality: int = 90,
) -> Path:
    """`root/<NNN.class_k>/<k>_<i>.jpg` with random sides in `sides`; returns `root`."""
    rng = np.random.default_rng(seed)
    for k in range(classes):
        folder = root / f"{k + 1:03d}.class_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            width, height = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
            photo_like(rng, width, height).save(folder / f"{k}_{i}.jpg", quality=quality)
    return root


def jpeg_bytes(width: int, height: int, seed: int = 0, quality: int = 90) -> bytes:
    import io

    buffer = io.BytesIO()
    photo_like(np.random.default_rng(seed), width, height).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


class Timer:
    """Wall time of a block in seconds (`timer.seconds`)."""

    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *_exc) -> None:
        self.seconds = time.perf_counter() - self.started


def emit(record: dict) -> dict:
    print(json.dumps(record, sort_keys=True), flush=True)
    return record


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def print_table(records: Iterable[dict], columns: Sequence[str], title: str = "") -> None:
    rows = [[_cell(record.get(column, "")) for column in columns] for record in records]
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(columns)]
    if title:
        print(f"\n{title}")
    print("  ".join(column.ljust(widths[i]) for i, column in enumerate(columns)))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    sys.stdout.flush()
