"""Epoch checkpoints (`--checkpoint-dir`, default /opt/ml/checkpoints, which SageMaker syncs).

After every epoch rank 0 writes `checkpoint.pt` atomically (temporary file, fsync, rename)
and keeps the one before as `checkpoint.previous.pt`. At start-up an unreadable latest
checkpoint (truncated upload, crash mid-copy) falls back to the previous one. A checkpoint
written by a run with other run-defining hyperparameters, or on other classes, is refused
rather than mixed in.

Checkpoints also carry rank 0's generator states, which a resumed run restores; together with
the per-epoch reseed (`seed_everything`) a run resumed from the checkpoint of epoch N ends
exactly where the uninterrupted run ends. Everything is stored as tensors and plain values,
so a checkpoint loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dogbreed_jobs.contract import CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE
from dogbreed_jobs.data import SetupError

CHECKPOINT_VERSION = 1


# ------------------------------------------------------------------------ generator states


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Generator states as tensors and plain values, loadable with weights_only=True."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ----------------------------------------------------------------------------- the files


class CheckpointStore:
    """The latest and the previous epoch checkpoint, replaced atomically."""

    REQUIRED = ("version", "epoch", "model", "optimizer", "config", "class_names", "history")

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.latest = self.directory / CHECKPOINT_FILE
        self.previous = self.directory / PREVIOUS_CHECKPOINT_FILE

    def save(self, state: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{CHECKPOINT_FILE}.{os.getpid()}.tmp"
        with open(temporary, "wb") as stream:
            torch.save(state, stream)
            stream.flush()
            os.fsync(stream.fileno())
        # A crash between the two renames leaves only the previous file, which load() reads.
        if self.latest.exists():
            os.replace(self.latest, self.previous)
        os.replace(temporary, self.latest)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def load(self, report: Callable[[str], None]) -> dict | None:
        """The newest readable checkpoint, or None when there is none."""
        if not self.directory.is_dir():
            return None
        for stale in self.directory.glob(f".{CHECKPOINT_FILE}.*.tmp"):
            stale.unlink(missing_ok=True)
        for path in (self.latest, self.previous):
            if not path.is_file():
                continue
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                missing = [key for key in self.REQUIRED if key not in state]
                if missing:
                    raise ValueError(f"missing {missing}")
            except (RuntimeError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:
                report(f"checkpoint {path} is unreadable ({str(err).splitlines()[0]}); skipping it")
                continue
            report(f"resuming from {path} (epoch {state['epoch']} done)")
            return state
        return None


def check_resumable(
    state: dict, config: dict, class_names: list[str], checkpoint_dir: str | os.PathLike
) -> None:
    """Refuse a checkpoint of another format, other run-defining `config`, or other classes."""
    if state["version"] != CHECKPOINT_VERSION:
        raise SetupError(f"checkpoint format {state['version']} is not {CHECKPOINT_VERSION}")
    differences = {
        name: (state["config"].get(name), value)
        for name, value in config.items()
        if state["config"].get(name) != value
    }
    if differences:
        described = ", ".join(
            f"{k}: {old!r} then, {new!r} now" for k, (old, new) in differences.items()
        )
        raise SetupError(
            f"{checkpoint_dir} holds a checkpoint of a run with other hyperparameters "
            f"({described}); give this run its own --checkpoint-dir or empty that folder"
        )
    if state["class_names"] != class_names:
        raise SetupError(f"{checkpoint_dir} holds a checkpoint trained on other classes")
