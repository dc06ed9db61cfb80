"""The dataset's layout: where its splits are, which class folders they hold, what each file
becomes, and every refusal as one line that names the dataset as its user gave it.

The preparation job plans its work with it; `run-local --input` checks the user's data with it
before an execution starts. So it stays standard library only: the host imports it.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dogbreed_jobs import archive
from dogbreed_jobs.contract import ARCHIVE_SUFFIXES, SPLITS, class_name_of

# Reasons in report.json found by the scan; the summary counts by them, so per-file specifics
# go in "detail" (the conversion adds its own reasons in preprocess.py).
HIDDEN_FILE = "hidden file"
HIDDEN_FOLDER = "hidden folder"
LINK_OUTSIDE = "link outside the input tree"
BROKEN_LINK = "broken link"
LINK_LOOP = "link to an enclosing folder"
NOT_REGULAR = "not a regular file"
NOT_IN_CLASS = "not in a class folder"
NOT_IN_SPLIT = "not in train/ valid/ test/"

# Named in the refusal of a single image given where the dataset belongs (the usual slip).
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
# Problems quoted in a refusal before "(and N more)": the line stays readable.
_QUOTED = 2

Extract = Callable[[Path, Path], object]


class LayoutError(ValueError):
    """The dataset cannot be used as it is laid out; the message is one line."""


def refuse(display: str, problems: list[str]) -> LayoutError:
    """One line: the dataset, its first problems, and how many more there are."""
    shown = "; ".join(problems[:_QUOTED])
    more = len(problems) - _QUOTED
    return LayoutError(
        f"invalid dataset {display}: {shown}" + (f" (and {more} more)" if more > 0 else "")
    )


@dataclass(frozen=True)
class Job:
    source: str  # the real path to read
    rel: str  # the path inside the dataset, as reported
    out: str  # the path written, relative to the output root
    split: str
    folder: str


def skip_record(path: str, reason: str, detail: str = "") -> dict:
    return {"path": path, "reason": reason, **({"detail": detail} if detail else {})}


# ------------------------------------------------------------------------------- finding input


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _find_split_root(base: Path, where: str) -> Path | None:
    """The folder holding the splits: `base` itself or one of its visible subfolders."""
    if any((base / split).is_dir() for split in SPLITS):
        return base
    holders = [
        child
        for child in sorted(base.iterdir())
        if child.is_dir()
        and not _is_hidden(child.name)
        and child.name != "__MACOSX"
        and any((child / split).is_dir() for split in SPLITS)
    ]
    if len(holders) > 1:
        names = ", ".join(f"{child.name}/" for child in holders)
        raise refuse(where, [f"several folders hold train/ valid/ test/: {names}"])
    return holders[0] if holders else None


def _extract(archive_path: Path, shown: str, scratch: Path, extract: Extract) -> tuple[Path, str]:
    try:
        extract(archive_path, scratch)
    except archive.UnsafeArchiveError as err:
        raise LayoutError(f"refusing the archive {shown}: {err}") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, tarfile.TarError) as err:
        raise LayoutError(f"cannot extract {shown}: {err}") from None
    root = _find_split_root(scratch, shown)
    if root is None:
        raise refuse(
            shown, ["no train/ valid/ test/ folders in the archive, at its root or one level below"]
        )
    inner = root.relative_to(scratch).as_posix()
    return root, shown if inner == "." else f"{shown}:{inner}/"


def _by_path_or_file_name(path: Path) -> str:
    return path.name if path.is_file() else str(path)


def locate_dataset(
    input_path: Path,
    scratch: Path,
    name: Callable[[Path], str] | None = None,
    extract: Extract = archive.extract,
) -> tuple[Path, str]:
    """(the folder holding the splits, how to name it in messages), extracting an archive.

    `name` names a path at or under `input_path` as its user knows it; by default a folder by
    its path and an archive by its file name, so a job's report reads the same wherever it
    ran. `extract` unpacks an archive into `scratch`.
    """
    name = name or _by_path_or_file_name
    if not input_path.exists():
        raise LayoutError(f"{name(input_path)}: no such file or folder")
    if input_path.is_file():
        if not (zipfile.is_zipfile(input_path) or tarfile.is_tarfile(input_path)):
            what = "an image" if input_path.suffix.lower() in _IMAGE_SUFFIXES else "a"
            raise LayoutError(
                f"{name(input_path)} is {what} file, not a dataset: give the folder holding "
                "train/ valid/ test/, or a zip or tar archive of it"
            )
        return _extract(input_path, name(input_path), scratch, extract)
    root = _find_split_root(input_path, name(input_path))
    if root is not None:
        return root, name(root)
    archives = [
        path
        for path in sorted(input_path.iterdir())
        if path.is_file()
        and not _is_hidden(path.name)
        and path.name.lower().endswith(ARCHIVE_SUFFIXES)
    ]
    if len(archives) > 1:
        names = ", ".join(path.name for path in archives)
        raise refuse(name(input_path), [f"several archives ({names}): give it only one"])
    if archives:
        return _extract(archives[0], name(archives[0]), scratch, extract)
    raise refuse(
        name(input_path),
        [
            "no train/ valid/ test/ folders in it or one level below, "
            "and no .zip or tar archive of them"
        ],
    )


# ------------------------------------------------------------------------------ planning jobs


def _output_names(files: list[str], taken: Iterable[str]) -> dict[str, str]:
    """Output name per input file name: its stem with `.jpg`, given out in sorted order.

    A later file whose name is taken gets its suffix folded in (`a.png` -> `a_png.jpg`), then
    a counter. Names depend only on the listing, not on which files turn out unusable, and
    compare case-insensitively so the output also survives a case-insensitive file system.
    """
    used = {name.casefold() for name in taken}
    names: dict[str, str] = {}
    later = []
    for file in files:
        natural = f"{Path(file).stem}.jpg"
        if natural.casefold() in used:
            later.append(file)
        else:
            used.add(natural.casefold())
            names[file] = natural
    for file in later:
        path = Path(file)
        base = f"{path.stem}_{path.suffix.lstrip('.').lower() or 'image'}"
        candidate, number = f"{base}.jpg", 2
        while candidate.casefold() in used:
            candidate, number = f"{base}_{number}.jpg", number + 1
        used.add(candidate.casefold())
        names[file] = candidate
    return names


@dataclass
class Plan:
    folders: list[str]  # class folders in index order
    jobs: list[Job]
    skipped: list[dict]
    renamed: list[dict]
    out_dirs: list[str]  # every folder the jobs write into, relative to the output root


class _Scanner:
    """Walks the dataset in sorted order, turning entries into jobs or skip records."""

    def __init__(self, root: Path):
        self.root = root
        self.skipped: list[dict] = []
        self.renamed: list[dict] = []
        self.jobs: list[Job] = []
        self.out_dirs: list[str] = []

    def skip(self, rel: str, reason: str, detail: str = "") -> None:
        self.skipped.append(skip_record(rel, reason, detail))

    def admit(self, path: Path, rel: str) -> Path | None:
        """The real path behind an entry, or None once recorded as skipped."""
        if _is_hidden(path.name):
            self.skip(rel, HIDDEN_FOLDER if path.is_dir() else HIDDEN_FILE)
            return None
        if not path.is_symlink():
            return path
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            self.skip(rel, BROKEN_LINK, os.readlink(path))
            return None
        if not target.is_relative_to(self.root):
            self.skip(rel, LINK_OUTSIDE, os.readlink(path))
            return None
        return target

    def admitted(self, directory: Path, rel: str) -> Iterator[tuple[Path, str, Path]]:
        """(entry, its path in the dataset, the real path behind it) for each entry of
        `directory` in name order that is not skipped."""
        for path in sorted(directory.iterdir(), key=lambda entry: entry.name):
            entry_rel = f"{rel}/{path.name}"
            target = self.admit(path, entry_rel)
            if target is not None:
                yield path, entry_rel, target

    def walk_class(
        self,
        directory: Path,
        rel: str,
        out: str,
        split: str,
        folder: str,
        enclosing: tuple[Path, ...],
    ) -> None:
        self.out_dirs.append(out)
        files: list[tuple[str, Path]] = []
        subfolders: list[tuple[str, Path]] = []
        for path, entry_rel, target in self.admitted(directory, rel):
            if target.is_dir():
                if target in enclosing:
                    self.skip(entry_rel, LINK_LOOP, os.readlink(path))
                else:
                    subfolders.append((path.name, target))
            elif target.is_file():
                files.append((path.name, target))
            else:
                self.skip(entry_rel, NOT_REGULAR)
        names = _output_names([name for name, _ in files], [name for name, _ in subfolders])
        for name, target in files:
            output = names[name]
            if output != f"{Path(name).stem}.jpg":
                self.renamed.append({"path": f"{rel}/{name}", "output": f"{out}/{output}"})
            self.jobs.append(Job(str(target), f"{rel}/{name}", f"{out}/{output}", split, folder))
        for name, target in subfolders:
            self.walk_class(
                target, f"{rel}/{name}", f"{out}/{name}", split, folder, (*enclosing, target)
            )


def _class_folders(root: Path, scanner: _Scanner, display: str) -> dict[str, dict[str, Path]]:
    """Each split's class folders (name -> real path); the entries beside them are skipped."""
    for path in sorted(root.iterdir(), key=lambda entry: entry.name):
        if path.name not in SPLITS:
            hidden = _is_hidden(path.name)
            scanner.skip(
                path.name,
                (HIDDEN_FOLDER if path.is_dir() else HIDDEN_FILE) if hidden else NOT_IN_SPLIT,
            )
    classes: dict[str, dict[str, Path]] = {}
    for split in SPLITS:
        split_path, known = root / split, len(scanner.skipped)
        split_dir = scanner.admit(split_path, split) if os.path.lexists(split_path) else None
        if split_dir is None or not split_dir.is_dir():
            refused = [entry["reason"] for entry in scanner.skipped[known:]]
            why = f"is refused ({refused[0]})" if refused else "is missing or not a folder"
            raise refuse(display, [f"split {split}/ {why}"])
        classes[split] = {}
        for path, rel, target in scanner.admitted(split_dir, split):
            if target.is_dir():
                classes[split][path.name] = target
            else:
                scanner.skip(rel, NOT_IN_CLASS)
        if not classes[split]:
            raise refuse(display, [f"split {split}/ has no class folders"])
    return classes


def plan(root: Path, display: str) -> Plan:
    """Check the structure and list the work; LayoutError names the split and class at fault."""
    root = root.resolve()
    scanner = _Scanner(root)
    classes = _class_folders(root, scanner, display)
    refused = {entry["path"]: entry["reason"] for entry in scanner.skipped}
    problems = []
    for split, other in (
        ("train", "valid"),
        ("train", "test"),
        ("valid", "train"),
        ("test", "train"),
    ):
        for folder in sorted(classes[split].keys() - classes[other].keys()):
            why = refused.get(f"{other}/{folder}")
            problems.append(
                f"class {folder} is in {split}/ but missing from {other}/"
                + (f" (refused: {why})" if why else "")
            )
    folders = sorted(classes["train"])
    by_name: dict[str, list[str]] = {}
    for folder in folders:
        by_name.setdefault(class_name_of(folder), []).append(folder)
    for name, same in by_name.items():
        if len(same) > 1:
            problems.append(f"class folders {', '.join(same)} all give the class name {name!r}")
    if problems:
        raise refuse(display, problems)

    for split in SPLITS:
        split_dir = (root / split).resolve()
        for folder in folders:
            path = classes[split][folder]
            rel = f"{split}/{folder}"
            scanner.walk_class(path, rel, rel, split, folder, (root, split_dir, path))
    # Before any conversion: a class with no file at all to learn from.
    candidates = Counter(job.folder for job in scanner.jobs if job.split == "train")
    require_training_images(folders, candidates, scanner.skipped, display)
    return Plan(folders, scanner.jobs, scanner.skipped, scanner.renamed, scanner.out_dirs)


def require_training_images(
    folders: list[str], train_counts: dict[str, int], skipped: list[dict], display: str
) -> None:
    """Stop when a class has nothing to learn from, naming each such class and why."""
    problems = []
    for folder in folders:
        if train_counts.get(folder, 0):
            continue
        prefix = f"train/{folder}/"
        reasons = Counter(entry["reason"] for entry in skipped if entry["path"].startswith(prefix))
        why = ", ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items()))
        problems.append(
            f"class {folder} has no usable training images in train/{folder} ({why or 'no files'})"
        )
    if problems:
        raise refuse(display, problems)
