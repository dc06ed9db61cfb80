"""What each local execution occupies in the store, and removing the ones nothing needs.

An execution owns its folder `<store>/executions/<id>/` (record, logs, job folders) and every
S3 object whose key holds its job-name tail (`<id>` less `local-`): the runner names every job
and output prefix of an execution with it (`TrainModel-<tail>`, `executions/<id>/...`).

An execution is kept, whatever its age, while something still reads what it owns: a
registered model version, a model, endpoint configuration or endpoint record (serve-local
serves the model data an endpoint record names), or a kept execution whose cached steps
point at its outputs. A running execution is never removed. Cache entries that point at
removed outputs are removed with them (they would miss anyway).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.local.store import Store

# The status of an execution that may still be writing (the runner records no other).
_RUNNING = "Executing"
# Folders of the store that hold records (not executions, S3 objects or the cache): what a
# record there names, a deployment or the registry still uses.
_SCRATCH = ("executions", "s3", "cache")


@dataclass
class ExecutionUsage:
    execution_id: str
    status: str
    start_time: str
    bytes: int = 0
    # Why it is kept: "endpoint dogbreed-classifier", "registry .../1.json", "execution <id>".
    needed_by: list[str] = field(default_factory=list)

    @property
    def tail(self) -> str:
        return self.execution_id.removeprefix("local-")


def _record(folder: Path) -> dict:
    try:
        return json.loads((folder / "record.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def executions(store: Store) -> list[ExecutionUsage]:
    """Every execution in the store, newest first, with its size and what still needs it."""
    found = []
    for folder in sorted(store.executions.glob("*/"), reverse=True):
        record = _record(folder)
        found.append(
            ExecutionUsage(
                folder.name,
                record.get("Status", "unknown (no readable record.json)"),
                record.get("StartTime", ""),
            )
        )
    owned = _owned_files(store, found)
    for usage in found:
        usage.bytes = _size(owned[usage.execution_id])
    _mark_needed(store, found)
    return found


def _owned_files(store: Store, found: list[ExecutionUsage]) -> dict[str, list[Path]]:
    owned: dict[str, list[Path]] = {usage.execution_id: [] for usage in found}
    for usage in found:
        owned[usage.execution_id].extend(_files(store.executions / usage.execution_id))
    tails = {usage.tail: usage.execution_id for usage in found}
    for path in _files(store.root / "s3"):
        key = path.relative_to(store.root / "s3").as_posix()
        for tail, execution_id in tails.items():
            if tail in key:
                owned[execution_id].append(path)
                break
    return owned


def _files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [Path(folder, name) for folder, _, names in os.walk(root) for name in names]


def _size(paths: list[Path]) -> int:
    """Bytes on disk, each file once: the store hard-links a dataset into every job."""
    seen, total = set(), 0
    for path in paths:
        try:
            stat = path.lstat()
        except FileNotFoundError:
            continue
        if (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_size
    return total


def _mark_needed(store: Store, found: list[ExecutionUsage]) -> None:
    for folder in sorted(p for p in store.root.iterdir() if p.is_dir()):
        if folder.name in _SCRATCH:
            continue
        for path in sorted(folder.rglob("*.json")):
            text = path.read_text(encoding="utf-8", errors="replace")
            for usage in found:
                if usage.tail in text:
                    usage.needed_by.append(f"{folder.name}/{path.relative_to(folder).as_posix()}")


def prune(store: Store, keep: int, dry_run: bool = False) -> list[ExecutionUsage]:
    """Remove every execution but the `keep` newest and those still needed; the removed."""
    found = executions(store)
    kept = {usage.execution_id for usage in found[:keep]}
    kept |= {u.execution_id for u in found if u.needed_by or u.status == _RUNNING}
    records = {u.execution_id: (store.executions / u.execution_id / "record.json") for u in found}
    # A kept execution's record names the outputs it read from cached steps of older ones.
    changed = True
    while changed:
        changed = False
        texts = [
            records[i].read_text(encoding="utf-8", errors="replace")
            for i in kept
            if records[i].is_file()
        ]
        for usage in found:
            if usage.execution_id in kept:
                continue
            readers = [text for text in texts if usage.tail in text]
            if readers:
                usage.needed_by.append("a kept execution's cached steps")
                kept.add(usage.execution_id)
                changed = True
    removed = [usage for usage in found if usage.execution_id not in kept]
    if not dry_run and removed:
        owned = _owned_files(store, removed)
        for usage in removed:
            for path in owned[usage.execution_id]:
                path.unlink(missing_ok=True)
            shutil.rmtree(store.executions / usage.execution_id, ignore_errors=True)
        _remove_empty_folders(store.root / "s3")
        _remove_stale_cache(store, removed)
    return removed


def _remove_empty_folders(root: Path) -> None:
    for folder, _, _ in sorted(os.walk(root), key=lambda entry: -len(entry[0])):
        if Path(folder) != root:
            try:
                os.rmdir(folder)
            except OSError:
                continue  # not empty


def _remove_stale_cache(store: Store, removed: list[ExecutionUsage]) -> None:
    for path in sorted(store.cache.rglob("*.json")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if any(usage.tail in text for usage in removed):
            path.unlink(missing_ok=True)
